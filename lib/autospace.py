"""Default search spaces and stages, derived from the data and the run (``experiments.tune``).

A learning-rate range written for one data set is wrong for the next: the step that moves
the scores by a useful amount depends on the features' scale after preprocessing, and an L2
strength that matters depends on the features' variance and on the number of examples. So
the default ranges are centred on values computed from the training rows (on a strided
subsample of at most ``SAMPLE_ROWS`` of them):

* ``learning_rate``, plain gradient steps (sgd; momentum and nesterov times ``1 - mu``,
  their steady-state step): ``c = 1 / lambda_max``, where ``lambda_max`` is the largest
  eigenvalue of the features' covariance (the curvature of a linear model's data loss is at
  most a constant times it, and steps past ``2 / curvature`` diverge); the hinge loss sums
  up to ``K - 1`` margins' gradients, so ``c / (K - 1)``. Range ``[c / 100, 100 c]``.
* ``learning_rate``, adaptive steps (adam, rmsprop: every weight moves by about the step,
  so a score moves by about ``lr * ||x||_1``): ``c = 1 / mean ||x||_1``, range
  ``[c / 100, 10 c]``; adagrad's steps shrink as its cache grows: ``[c / 10, 100 c]``.
* ``reg`` (``reg * sum W**2``): features scaled by ``a`` scale the weights by ``1 / a``, so
  an equally strong penalty scales with the features' mean variance ``v``, and a penalty
  matters less the more examples ``N`` the data term averages: ``c = v / N``, range
  ``[c / 100, 1000 c]``.
* ``dropout`` (two-layer nets): ``[0, 0.5]``, linear.

Calibration, on the data sets they were not fitted to: the hand-found CIFAR-10 values
(momentum 1.3e-2 and reg 2.4e-6 for softmax, 1.9e-4 for the hinge loss, adam 1e-3 for the
two-layer net) sit inside, away from the borders. Where a stage's best trials still sit at a
border of a default range, the next stage extends it there (``lib.narrowing.narrow``); a
range the config gives is kept as given.

The stages follow the notes' coarse to fine with Hyperband's geometry (a quarter of the
trials, four times the epochs): ``64 x E/16``, ``16 x E/4`` and ``8 x E``, the run's own
``E`` epochs (``lib.tune`` then trains replicas of the best with new seeds).

Pure functions of their arguments (numpy on the host).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from lib import data, settings
from lib.space import Dim, Space

SAMPLE_ROWS = 4096  # training rows the scales are measured on (strided)
_POWER_STEPS = 50  # power-iteration steps for the covariance's top eigenvalue

# Optimizer families by how their step size acts (newton and lbfgs take no learning rate).
_PLAIN = {"sgd": 1.0, "momentum": None, "nesterov": None}  # None: times (1 - mu)
_ADAPTIVE = {"adam": (1e-2, 10.0), "rmsprop": (1e-2, 10.0), "adagrad": (0.1, 100.0)}


class Scales(NamedTuple):
    """What the default ranges depend on, measured on the preprocessed training rows."""

    top_eigenvalue: float  # largest eigenvalue of the features' covariance
    mean_l1: float  # mean ||x||_1 of a row
    mean_variance: float  # mean over features of their variance
    num_train: int
    num_classes: int


def data_scales(dataset: data.Dataset) -> Scales:
    """The ``Scales`` of ``dataset``'s training rows (a strided subsample of at most
    ``SAMPLE_ROWS``; the covariance's top eigenvalue by power iteration, in float64)."""
    x = dataset.x_train
    x = np.asarray(x[:: max(1, -(-len(x) // SAMPLE_ROWS))], np.float64)
    x = x - x.mean(axis=0)
    v = np.ones(x.shape[1]) / np.sqrt(x.shape[1])
    top = 0.0
    for _ in range(_POWER_STEPS):
        w = x.T @ (x @ v) / len(x)
        top = float(np.linalg.norm(w))
        if top == 0.0:
            break
        v = w / top
    return Scales(
        top_eigenvalue=max(top, 1e-12),
        mean_l1=max(float(np.abs(x).sum(axis=1).mean()), 1e-12),
        mean_variance=max(float(x.var(axis=0).mean()), 1e-12),
        num_train=int(dataset.x_train.shape[0]),
        num_classes=int(dataset.num_classes),
    )


def learning_rate_range(
    setup: settings.Setup, hparams: Mapping[str, float], scales: Scales
) -> tuple[float, float, str] | None:
    """(low, high, how it was derived) of the default learning-rate range for ``setup``'s
    optimizer and loss; None for an optimizer that reads no learning rate."""
    name = setup.optimizer
    if name in _ADAPTIVE:
        lo, hi = _ADAPTIVE[name]
        c = 1.0 / scales.mean_l1
        return c * lo, c * hi, f"{name}: c = 1 / mean ||x||_1 = {c:.3g}, [{lo:g} c, {hi:g} c]"
    if name not in _PLAIN:
        return None
    c, how = 1.0 / scales.top_eigenvalue, "c = 1 / lambda_max(cov x)"
    if _PLAIN[name] is None:
        c *= 1.0 - float(hparams.get("mu", 0.9))
        how += " * (1 - mu)"
    if setup.loss == "hinge":
        c /= max(1, scales.num_classes - 1)
        how += " / (K - 1)"
    return c / 100, c * 100, f"{name}, {setup.loss}: {how} = {c:.3g}, [c / 100, 100 c]"


def default_space(
    setup: settings.Setup, hparams: Mapping[str, float], scales: Scales
) -> tuple[Space, dict[str, str]]:
    """The default space for ``setup``'s model, loss and optimizer on data of ``scales``,
    and one line per dimension saying how its range was derived."""
    space, notes = {}, {}
    lr = learning_rate_range(setup, hparams, scales)
    if lr is not None:
        space["learning_rate"] = Dim(lr[0], lr[1], "log")
        notes["learning_rate"] = lr[2]
    c = scales.mean_variance / scales.num_train
    space["reg"] = Dim(c / 100, c * 1000, "log")
    notes["reg"] = f"c = mean feature variance / N = {c:.3g}, [c / 100, 1000 c]"
    if "dropout" not in _unused(setup):
        space["dropout"] = Dim(0.0, 0.5, "linear")
        notes["dropout"] = "[0, 0.5], linear"
    return space, notes


def _unused(setup: settings.Setup) -> set[str]:
    return {n for n in ("learning_rate", "reg", "dropout") if settings.unused_reason(n, setup)}


def default_stages(num_epochs: int, first: int = 64) -> list[tuple[int, int]]:
    """``first x E/16``, ``first/4 x E/4`` and ``first/8 x E`` (epochs at least 1; a stage
    with no more epochs than the one before it, or as many as the last, is left out)."""
    stages = [(first, max(1, round(num_epochs / 16))), (first // 4, max(1, round(num_epochs / 4)))]
    stages = [
        s for i, s in enumerate(stages) if s[1] < num_epochs and (i == 0 or s[1] > stages[0][1])
    ]
    return [*stages, (first // 8, int(num_epochs))]


def resolve(
    configured: Mapping[str, Any] | Space,
    setup: settings.Setup,
    hparams: Mapping[str, float],
    dataset: data.Dataset,
) -> tuple[Space, tuple[str, ...], dict[str, str]]:
    """The space a tune searches: the defaults, with every configured entry (already parsed,
    ``lib.space.space_from_config``) in place of its default. Returns (space, the names whose
    range is a default (extendable at a border), how each range was derived)."""
    space, notes = default_space(setup, hparams, data_scales(dataset))
    for name in configured:
        notes[name] = "configured"
    merged = {**space, **configured}
    return merged, tuple(n for n in merged if n not in configured), notes
