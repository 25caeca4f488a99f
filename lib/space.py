"""Search spaces: parsing and checking ``search.space``, samplers, narrowing, border checks.

A search space maps hyperparameter names (``settings.HPARAMS`` plus the structural ``hidden``,
``num_epochs``, ``optimizer``) to a :class:`Dim`: a range on a ``log`` or ``linear`` scale,
or a tuple of choices. Random search draws each value independently, exactly as the notes:

    learning_rate = 10 ** uniform(log10(low), log10(high))      (log scale)

Everything here is a pure function of its arguments (no files, no training); ``lib.search``
runs the study.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import optuna

from lib import settings

STRUCTURAL = ("hidden", "num_epochs", "optimizer")  # change the program: one batch per value
INTEGER = ("hidden", "num_epochs")
SCALES = ("log", "linear")
EDGE = 0.1  # the outer tenth of a range (on its scale) is its border


class Dim(NamedTuple):
    """One dimension of a search space: ``[low, high]`` on ``scale``, or ``choices``."""

    low: float | None = None
    high: float | None = None
    scale: str = "log"  # "log" | "linear" | "choice"
    choices: tuple = ()


Space = dict[str, Dim]


def valid_names() -> tuple[str, ...]:
    """Every name a search space may use."""
    return tuple(settings.HPARAMS) + STRUCTURAL


def stages_from_config(
    stages: str | Sequence | None, num_trials: int, num_epochs: int
) -> list[tuple[int, int]]:
    """``"64x1,16x5,4x20"`` (or ``[(64, 1), ...]``) -> ``[(trials, epochs), ...]``.

    Empty means one stage of ``num_trials`` trials of ``num_epochs`` epochs.

    Raises:
      ValueError: a part that is not two positive integers ``TRIALSxEPOCHS``.
    """
    if not stages:
        return [(int(num_trials), int(num_epochs))]
    parts = (
        [p.lower().split("x") for p in stages.replace(" ", "").split(",")]
        if isinstance(stages, str)
        else stages
    )
    try:
        pairs = [tuple(int(v) for v in p) for p in parts]
    except (TypeError, ValueError):
        pairs = [()]
    if any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise ValueError(
            f"search.stages={stages!r} is not a list of TRIALSxEPOCHS with "
            "positive integers; write it like --config.search.stages=64x1,16x5,4x20"
        )
    return pairs


def space_from_config(space: Mapping[str, Any]) -> Space:
    """Parses ``search.space`` (name -> {low, high, scale} or {choices}) and checks its form.

    Raises:
      ValueError: an unknown name (the valid ones are listed), a malformed entry, low >= high,
        a log scale with low <= 0.
    """
    space = space.to_dict() if hasattr(space, "to_dict") else dict(space)
    if not space:
        raise ValueError(
            "search.space is empty; add at least one entry, e.g. "
            "search.space.learning_rate = dict(low=1e-4, high=1, scale='log')"
        )
    out = {}
    for name, entry in space.items():
        where = f"search.space.{name}"
        if name not in valid_names():
            raise ValueError(
                f"unknown hyperparameter {where}; valid names: {', '.join(valid_names())}"
            )
        entry = entry.to_dict() if hasattr(entry, "to_dict") else entry
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"{where} must be a dict with low, high, scale or with choices, got {entry!r}"
            )
        extra = set(entry) - {"low", "high", "scale", "choices"}
        if extra:
            raise ValueError(
                f"{where} has unknown fields {sorted(extra)}; use low, high, "
                "scale ('log' or 'linear') or choices"
            )
        if entry.get("choices") is not None:
            choices = tuple(entry["choices"])
            if not choices or len(set(choices)) != len(choices):
                raise ValueError(
                    f"{where}.choices={choices!r} must be a non-empty list of distinct values"
                )
            out[name] = Dim(scale="choice", choices=choices)
            continue
        if name == "optimizer":
            raise ValueError(
                f"{where} needs choices (a list of names), e.g. "
                f"choices=('sgd', 'adam'); valid: {', '.join(settings.optimizers())}"
            )
        low, high, scale = entry.get("low"), entry.get("high"), entry.get("scale", "log")
        if low is None or high is None:
            raise ValueError(f"{where} needs both low and high (or choices)")
        if scale not in SCALES:
            raise ValueError(f"{where}.scale={scale!r} is not one of {', '.join(SCALES)}")
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(
                f"{where}: low={low:g} must be finite and below high={high:g}; "
                f"swap or correct --config.{where}.low/high"
            )
        if scale == "log" and low <= 0:
            raise ValueError(
                f"{where}: a log scale needs low > 0, got low={low:g}; set "
                f"--config.{where}.low to a positive value or use scale='linear'"
            )
        out[name] = Dim(low, high, scale)
    return out


def check_space(space: Space, setup: settings.Setup, stages: Sequence[tuple[int, int]]) -> None:
    """Checks every value the space can produce against ``settings.validate``'s ranges."""
    for name, dim in space.items():
        where = f"search.space.{name}"
        values = dim.choices if dim.scale == "choice" else (dim.low, dim.high)
        if name == "optimizer":
            bad = [v for v in values if v not in settings.optimizers()]
            if bad:
                raise ValueError(
                    f"{where}: unknown optimizers {bad}; valid: {', '.join(settings.optimizers())}"
                )
        elif name in INTEGER:
            if any(float(v) < 1 or float(v) != int(v) for v in values):
                raise ValueError(f"{where}: {name} takes positive integers, got {values}")
        else:
            for v in values:
                try:
                    settings.validate(setup, {name: v})
                except ValueError as e:
                    raise ValueError(f"{where}: {e}; narrow the range") from None
    _check_used(space, setup)
    if "num_epochs" in space and len(stages) > 1:
        raise ValueError(
            "search.space.num_epochs conflicts with search.stages (each stage "
            "sets its epochs); remove one of them"
        )


def _check_used(space: Space, setup: settings.Setup) -> None:
    """Refuses hyperparameters the runs would ignore (searching them only adds noise): those
    no optimizer of the search reads (``settings.unused_reason``)."""
    opt = space.get("optimizer")
    optimizers = opt.choices if opt is not None else (setup.optimizer,)
    for name in space:
        reasons = [
            settings.unused_reason(name, dataclasses.replace(setup, optimizer=o))
            for o in optimizers
        ]
        if all(reasons):
            raise ValueError(
                f"search.space.{name}: this search trains with {', '.join(optimizers)} and "
                f"{reasons[0]}, or remove {name} from the space"
            )


# ----------------------------------------------------------------------------- scales


def to_scale(dim: Dim, value) -> np.ndarray:
    """A value on the dimension's own scale: log10 for ``log``, itself for ``linear``."""
    value = np.asarray(value, np.float64)
    return np.log10(value) if dim.scale == "log" else value


def from_scale(dim: Dim, t) -> np.ndarray:
    """The inverse of :func:`to_scale`: ``10 ** t`` for ``log``, ``t`` for ``linear``."""
    t = np.asarray(t, np.float64)
    return 10.0**t if dim.scale == "log" else t


def _finish(name: str, dim: Dim, value: float):
    """Clips into [low, high] (undoing float round-off) and rounds integer names."""
    value = float(np.clip(value, dim.low, dim.high))
    return round(value) if name in INTEGER else value


def _random_int(dim: Dim, rng: np.random.Generator) -> int:
    """An integer in [low, high], each equally likely (linear) or each with the log-width of
    its cell [k - 1/2, k + 1/2] (log): ``round(10 ** uniform(log10(low - 1/2), log10(high + 1/2)))``."""
    low, high = int(dim.low), int(dim.high)
    if dim.scale == "linear":
        return int(rng.integers(low, high + 1))
    value = 10 ** rng.uniform(math.log10(low - 0.5), math.log10(high + 0.5))
    return min(max(round(value), low), high)


def sample_random(space: Space, num: int, seed: int | Sequence[int]) -> list[dict[str, Any]]:
    """``num`` independent draws; row i comes from its own generator ``[*seed, i]``.

    Log scale: ``10 ** uniform(log10 low, log10 high)``; linear: ``uniform(low, high)``;
    choices: uniformly one of them; integers (``hidden``, ``num_epochs``): every integer of
    [low, high] equally likely (linear) or log-uniform over their cells (log), see
    :func:`_random_int`. Row i does not depend on ``num``.
    """
    seed = list(np.atleast_1d(seed).astype(int))
    rows = []
    for i in range(num):
        rng = np.random.default_rng([*seed, i])
        row = {}
        for name in sorted(space):
            dim = space[name]
            if dim.scale == "choice":
                row[name] = dim.choices[int(rng.integers(len(dim.choices)))]
            elif name in INTEGER:
                row[name] = _random_int(dim, rng)
            elif dim.scale == "log":
                row[name] = _finish(
                    name, dim, 10 ** rng.uniform(math.log10(dim.low), math.log10(dim.high))
                )
            else:
                row[name] = _finish(name, dim, rng.uniform(dim.low, dim.high))
        rows.append(row)
    return rows


def sample_grid(space: Space, num: int) -> list[dict[str, Any]]:
    """A full grid of about ``num`` points: every choice, and k points per numeric
    dimension at the cell centres ``low + (i + 1/2) (high - low) / k`` on its scale, with
    ``k = max(1, round((num / #choice combinations) ** (1 / #numeric dims)))``. Integer
    dimensions keep each rounded value once (a narrow range may hold fewer than k)."""
    names = sorted(space)
    numeric = [n for n in names if space[n].scale != "choice"]
    combos = math.prod(len(space[n].choices) for n in names if space[n].scale == "choice")
    k = max(1, round((num / combos) ** (1 / max(len(numeric), 1))))
    axes = []
    for name in names:
        dim = space[name]
        if dim.scale == "choice":
            axes.append(dim.choices)
        else:
            lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
            t = lo + (np.arange(k) + 0.5) * (hi - lo) / k
            axes.append(list(dict.fromkeys(_finish(name, dim, v) for v in from_scale(dim, t))))
    return [dict(zip(names, point)) for point in itertools.product(*axes)]


def structure(row: Mapping[str, Any]) -> tuple:
    """The structural part of a trial (trials with equal structure share one program)."""
    return tuple((n, row[n]) for n in STRUCTURAL if n in row)


def top_indices(scores: Sequence[float], fraction: float) -> np.ndarray:
    """Indices of the best ``max(1, ceil(fraction * n))`` scores, best first."""
    scores = np.asarray(scores, np.float64)
    k = max(1, math.ceil(fraction * len(scores)))
    return np.argsort(-scores, kind="stable")[:k]


def narrow(
    space: Space, rows: Sequence[Mapping[str, Any]], scores: Sequence[float], top_fraction: float
) -> Space:
    """The next stage's space: each range shrunk around the best ``top_fraction`` trials.

    On each dimension's scale the new range is the span [a, b] of the top trials' values,
    padded by ``max((b - a) / 4, (high - low) / 20)`` on each side and clipped to the old
    range (so it never grows); choices keep those the top trials used.
    """
    if not rows:
        raise ValueError("cannot narrow a search space without finished trials")
    top = [rows[i] for i in top_indices(scores, top_fraction)]
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
        out[name] = dim._replace(low=new_lo, high=new_hi)
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
    ``configured``: the range the config gave (default ``space``); when ``space`` is a
    stage's narrowed range, a side warns only where it is still the configured bound, and
    the suggestion widens the configured range.
    """
    configured = space if configured is None else configured
    if not rows:
        return []
    best = [rows[i] for i in top_indices(scores, 0.1)]
    warnings = []
    for name in sorted(space):
        dim = space[name]
        if dim.scale == "choice":
            continue
        lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
        if not hi > lo:
            continue
        u = (np.median(to_scale(dim, [r[name] for r in best])) - lo) / (hi - lo)
        if EDGE <= u <= 1 - EDGE:
            continue
        side = "low" if u < EDGE else "high"
        conf = configured.get(name, dim)
        if conf.scale == "choice" or getattr(dim, side) != getattr(conf, side):
            continue  # a bound the search narrowed itself: the optimum is inside the range
        suggest = _widened(name, conf, side, setup)
        message = (
            f"{name}: the best trials lie at the {side} border of its configured range "
            f"[{conf.low:.3g}, {conf.high:.3g}] (outer tenth on a {dim.scale} scale); "
        )
        if suggest is not None:
            message += (
                f"widen it, e.g. --config.search.space.{name}.{side}={suggest:.3g} (a "
                "finished study keeps its ranges: a wider range needs a new --workdir)"
            )
        else:
            message += f"the range already reaches the limit of valid {name} values"
        warnings.append(message)
    return warnings


def _widened(name: str, dim: Dim, side: str, setup: settings.Setup | None):
    """A valid bound past ``side``: half the range's width beyond it on its scale, the step
    halved (up to 10 times) while ``settings.validate`` refuses it; None at a hard limit."""
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
    if name in INTEGER:
        return value >= 1
    try:
        settings.validate(setup or settings.Setup(1, 2), {name: value})
    except ValueError:
        return False
    return True


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distribution of each dimension (for the study's record and for TPE)."""
    out = {}
    for name, dim in space.items():
        if dim.scale == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(dim.choices)
        elif name in INTEGER:
            out[name] = optuna.distributions.IntDistribution(
                int(dim.low), int(dim.high), log=dim.scale == "log"
            )
        else:
            out[name] = optuna.distributions.FloatDistribution(
                dim.low, dim.high, log=dim.scale == "log"
            )
    return out


def space_to_json(space: Space) -> dict[str, dict]:
    """A space as plain JSON (the form ``search.space`` takes in a config)."""
    return {
        n: (
            {"choices": list(d.choices)}
            if d.scale == "choice"
            else {"low": d.low, "high": d.high, "scale": d.scale}
        )
        for n, d in space.items()
    }


def space_from_json(obj: Mapping[str, Mapping]) -> Space:
    """The inverse of :func:`space_to_json`."""
    return {
        n: (
            Dim(scale="choice", choices=tuple(e["choices"]))
            if "choices" in e
            else Dim(e["low"], e["high"], e["scale"])
        )
        for n, e in obj.items()
    }
