"""Search spaces: parsing and checking ``search.space`` and ``search.stages``, scales,
Optuna distributions, JSON.

A search space maps hyperparameter names (``settings.HPARAMS`` plus the structural ``hidden``,
``num_epochs``, ``optimizer``) to a :class:`Dim`: a range on a ``log`` or ``linear`` scale,
or a tuple of choices. ``lib.samplers`` draws trials from a space, ``lib.narrowing`` shrinks
it around a stage's best trials and warns at its borders.

Everything here is a pure function of its arguments (no files, no training); ``lib.search``
runs the study.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna

from lib import settings

STRUCTURAL = ("hidden", "num_epochs", "optimizer")  # change the program: one batch per value
INTEGER = ("hidden", "num_epochs")
SCALES = ("log", "linear")


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
    return {name: _dim_from_config(name, entry) for name, entry in space.items()}


def _dim_from_config(name: str, entry: Any) -> Dim:
    """One entry of ``search.space``: its form, then its choices or its range."""
    where = f"search.space.{name}"
    if name not in valid_names():
        raise ValueError(f"unknown hyperparameter {where}; valid names: {', '.join(valid_names())}")
    entry = entry.to_dict() if hasattr(entry, "to_dict") else entry
    if not isinstance(entry, Mapping):
        raise ValueError(  # noqa: TRY004 (every malformed config is a ValueError)
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
        return Dim(scale="choice", choices=choices)
    if name == "optimizer":
        raise ValueError(
            f"{where} needs choices (a list of names), e.g. "
            f"choices=('sgd', 'adam'); valid: {', '.join(settings.optimizers())}"
        )
    return _range_from_config(where, entry)


def _range_from_config(where: str, entry: Mapping[str, Any]) -> Dim:
    """A ``{low, high, scale}`` entry as a :class:`Dim` (``where``: its config path)."""
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
    return Dim(low, high, scale)


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


def finish(name: str, dim: Dim, value: float):
    """Clips into [low, high] (undoing float round-off) and rounds integer names."""
    value = float(np.clip(value, dim.low, dim.high))
    return round(value) if name in INTEGER else value


def structure(row: Mapping[str, Any]) -> tuple:
    """The structural part of a trial (trials with equal structure share one program)."""
    return tuple((n, row[n]) for n in STRUCTURAL if n in row)


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
