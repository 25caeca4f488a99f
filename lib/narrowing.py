"""Coarse to fine: where a stage's best trials lie in its range.

``narrow`` shrinks each range around the best trials (the next stage's space);
``border_warnings`` says when they sit at a configured bound (the optimum may lie outside
the range) and suggests a wider, still valid bound. Pure functions of their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from lib import settings
from lib.space import INTEGER, Dim, Space, from_scale, to_scale

EDGE = 0.1  # the outer tenth of a range (on its scale) is its border


def top_indices(scores: Sequence[float], fraction: float) -> np.ndarray:
    """Indices of the best ``max(1, ceil(fraction * n))`` scores, best first."""
    scores = np.asarray(scores, np.float64)
    k = max(1, math.ceil(fraction * len(scores)))
    return np.argsort(-scores, kind="stable")[:k]


def narrow(
    space: Space,
    rows: Sequence[Mapping[str, Any]],
    scores: Sequence[float],
    top_fraction: float,
    extend: Collection[str] = (),
    setup: settings.Setup | None = None,
) -> Space:
    """The next stage's space: each range shrunk around the best ``top_fraction`` trials.

    On each dimension's scale the new range is the span [a, b] of the top trials' values,
    padded by ``max((b - a) / 4, (high - low) / 20)`` on each side and clipped to the old
    range (so it never grows); choices keep those the top trials used. A dimension named in
    ``extend`` (a default range, not a configured one) whose best trials sit at a border
    (``border_extensions``) grows past that border instead, to the valid bound
    ``border_warnings`` would suggest ("careful with best values on border").
    """
    if not rows:
        raise ValueError("cannot narrow a search space without finished trials")
    top = [rows[i] for i in top_indices(scores, top_fraction)]
    grown = border_extensions(space, rows, scores, extend, setup)
    out = {}
    for name, dim in space.items():
        if dim.scale == "choice":
            used = {r[name] for r in top}
            out[name] = dim._replace(choices=tuple(c for c in dim.choices if c in used))
            continue
        lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
        t = to_scale(dim, [r[name] for r in top])
        pad = max((t.max() - t.min()) / 4, (hi - lo) / 20)
        # A side that reaches the old bound keeps it exactly as given (no round trip through
        # the scale: 10 ** log10(5e-3) is 0.004999999999999999), so border_warnings can tell
        # a configured bound from one the search narrowed itself.
        a, b = t.min() - pad, t.max() + pad
        new_lo = dim.low if a <= lo else max(float(from_scale(dim, a)), dim.low)
        new_hi = dim.high if b >= hi else min(float(from_scale(dim, b)), dim.high)
        if name in INTEGER:
            new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
        side, bound = grown.get(name, (None, None))
        if side == "low":
            new_lo = bound
        elif side == "high":
            new_hi = bound
        out[name] = dim._replace(low=new_lo, high=new_hi)
    return out


def border_extensions(
    space: Space,
    rows: Sequence[Mapping[str, Any]],
    scores: Sequence[float],
    extend: Collection[str],
    setup: settings.Setup | None = None,
) -> dict[str, tuple[str, float]]:
    """{name: (side, new bound)} for each numeric dimension in ``extend`` whose best trials
    (the median of the top tenth, as ``border_warnings`` finds them) sit in the outer tenth
    of its range: the bound half the range's width past that side, valid for ``setup``
    (none where the range already reaches the limit of valid values)."""
    if not rows:
        return {}
    best = [rows[i] for i in top_indices(scores, 0.1)]
    out = {}
    for name in sorted(set(extend) & set(space)):
        side = _border_side(name, space[name], best)
        bound = None if side is None else _widened(name, space[name], side, setup)
        if bound is not None:
            out[name] = (side, bound)
    return out


def border_warnings(
    space: Space,
    rows: Sequence[Mapping[str, Any]],
    scores: Sequence[float],
    setup: settings.Setup | None = None,
    configured: Space | None = None,
) -> list[str]:
    """One message per numeric hyperparameter whose best values lie in the outer tenth of
    its range (on its scale), naming the side and suggesting a wider bound.

    "Best values": the median (on the scale) of the top tenth of the trials (at least one).
    ``setup``: the sweep's run, whose ``settings.validate`` the suggested bound passes
    (None: the hyperparameter's own range only). ``configured``: the range the config gave
    (default ``space``); when ``space`` is a stage's narrowed range, a side warns only where
    it is still the configured bound, and the suggestion widens the configured range.
    """
    configured = space if configured is None else configured
    if not rows:
        return []
    best = [rows[i] for i in top_indices(scores, 0.1)]
    warnings = []
    for name in sorted(space):
        dim = space[name]
        side = _border_side(name, dim, best)
        conf = configured.get(name, dim)
        if side is None or conf.scale == "choice" or getattr(dim, side) != getattr(conf, side):
            continue  # inside, or a bound the search narrowed itself: the optimum is inside
        warnings.append(_border_message(name, dim, conf, side, setup))
    return warnings


def _border_side(name: str, dim: Dim, best: Sequence[Mapping[str, Any]]) -> str | None:
    """``"low"`` or ``"high"`` where the median of the ``best`` trials' values (on the
    scale) lies in that outer tenth of a numeric range; None inside it (or for choices)."""
    if dim.scale == "choice":
        return None
    lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
    if not hi > lo:
        return None
    u = (np.median(to_scale(dim, [r[name] for r in best])) - lo) / (hi - lo)
    if EDGE <= u <= 1 - EDGE:
        return None
    return "low" if u < EDGE else "high"


def _border_message(name: str, dim: Dim, conf: Dim, side: str, setup: settings.Setup | None) -> str:
    suggest = _widened(name, conf, side, setup)
    message = (
        f"{name}: the best trials lie at the {side} border of its configured range "
        f"[{conf.low:.3g}, {conf.high:.3g}] (outer tenth on a {dim.scale} scale); "
    )
    if suggest is None:
        return message + f"the range already reaches the limit of valid {name} values"
    return message + (
        f"widen it, e.g. --config.search.space.{name}.{side}={suggest:.3g} (a "
        "finished study keeps its ranges: a wider range needs a new --workdir)"
    )


def _widened(name: str, dim: Dim, side: str, setup: settings.Setup | None):
    """A valid bound past ``side``: half the range's width beyond it on its scale, the step
    halved (up to 10 times) while ``_allowed`` refuses it; None at a hard limit."""
    lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
    edge, step = (lo, lo - hi) if side == "low" else (hi, hi - lo)
    for _ in range(10):
        step /= 2
        value = float(from_scale(dim, edge + step))
        if name in INTEGER:
            value = max(1, round(value))
        if value != getattr(dim, side) and _allowed(name, value, setup):
            return value
    return None


def _allowed(name: str, value: float, setup: settings.Setup | None) -> bool:
    """Whether ``name=value`` is valid: integers >= 1; a hyperparameter passes
    ``settings.validate`` for the sweep's ``setup``, or (no setup) its own range."""
    if name in INTEGER:
        return value >= 1
    try:
        if setup is None:
            # settings has no public per-hyperparameter range check that needs no Setup.
            settings._check_range(name, value, settings.CONFIG_PATHS[name])
        else:
            settings.validate(setup, {name: value})
    except ValueError:
        return False
    return True


def next_space(
    index: int,
    space: Space,
    complete: Sequence[Mapping[str, Any]],
    top_fraction: float,
    extend: Collection[str] = (),
    setup: settings.Setup | None = None,
) -> tuple[Space, dict[str, list]]:
    """Stage ``index + 1``'s range after stage ``index`` over ``space``: ``narrow`` around
    its ``complete`` trials' records (``space`` itself with none), and each default range
    ``extend`` grows, logged: (space, {name: [side, new bound]})."""
    if not complete:
        return space, {}
    rows, scores = [r["hparams"] for r in complete], [r["value"] for r in complete]
    grown = border_extensions(space, rows, scores, extend, setup)
    for name, (side, bound) in grown.items():
        logging.info(
            "stage %d: %s: the best trials lie at the %s border of the default range "
            "[%.3g, %.3g]; stage %d extends it to %.3g",
            index,
            name,
            side,
            space[name].low,
            space[name].high,
            index + 1,
            bound,
        )
    narrowed = narrow(space, rows, scores, top_fraction, extend, setup)
    return narrowed, {name: list(value) for name, value in grown.items()}
