"""Ensemble members: stacks of trained parameters built from seeds, a sweep, checkpoints or a
running weight average.

A member group (``Group``) is a stack of parameter pytrees that share one structure (a leading
member axis on every leaf), so that ``lib.ensemble`` scores it with one vmapped call.

Sources of members (``Options.source``; ``lib.ensemble.member_inputs`` reads the options
from a config, and everything here takes them as plain values):

* ``seeds``: ``size`` models of one config from different initialisations, trained as one
  vmapped ``train.fit`` on shared data, sharded over the devices (``sharding.fit_split``);
* ``search``: the top ``size`` complete trials of a sweep workdir's ``trials.csv`` (by
  validation accuracy), retrained from their hyperparameters and seeds, one sharded,
  vmapped ``fit`` per structure (``sharding.fit_trials``; model, hidden size, epochs, ...);
* ``checkpoints``: the last ``size`` epoch checkpoints of an ``experiments.train`` workdir;
* ``ema``: ``size`` seeds trained with a running average of the weights
  (``train.ema_decay`` > 0); the averaged weights are the members, and the raw final weights
  are returned alongside.

In a multi-process run (``lib.distributed``) every process builds the same members: each
fit is sharded over every process's devices and gathered (numpy params on every process,
equal to one process's with as many devices); every process restores the checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from lib import checkpoints, data, distributed, settings, sharding, sweep_report, train
from lib.types import Params, PRNGKey


class Options(NamedTuple):
    """What to build the members from, as plain values (``lib.ensemble.member_inputs`` reads
    them from a config: its ``ensemble`` block, and the run the members come from).

    ``setup`` and ``hparams`` are that run's: the members' own (sources seeds, ema), the
    sweep's base, under each trial's values (search), or the training run's (checkpoints).
    """

    source: str  # one of SOURCES
    size: int  # the number of members
    setup: settings.Setup
    hparams: dict[str, float]
    trained_on: str = ""  # checkpoints: the data set the run trained on ("": not checked)
    seed: int = 0  # seeds, ema: the members' keys are split from jax.random.key(seed)
    search_dir: str = ""  # search: the workdir of experiments.sweep (its trials.csv)
    own_order: bool = False  # search: each trial draws its own minibatch order (err apart)
    train_dir: str = ""  # checkpoints: the workdir of experiments.train
    search_stages: str = "last"  # search: the trials of the last stage, or of all (STAGES)


class Group(NamedTuple):
    """Members that share one structure and are evaluated by one vmapped call.

    Attributes:
      setup: their static structure (model, sizes, ...).
      params: stacked parameters: every leaf has a leading member axis of length M.
      names: one label per member, e.g. ``"seed 2"``, ``"trial 17"``, ``"epoch 30"``.
    """

    setup: settings.Setup
    params: Params
    names: tuple[str, ...]


def check_groups(
    groups: Sequence[Group], num_features: int | None = None, num_classes: int | None = None
) -> None:
    """Raises ValueError unless every group scores the same classes (and data, if given)."""
    if not groups:
        raise ValueError("an ensemble needs at least one member group")
    classes = {g.setup.num_classes for g in groups}
    if len(classes) > 1 or (num_classes is not None and classes != {num_classes}):
        detail = ", ".join(f"{g.names[0]}...: {g.setup.num_classes}" for g in groups)
        raise ValueError(
            f"ensemble members have incompatible class counts ({detail}"
            + (f"; the data have {num_classes}" if num_classes is not None else "")
            + "); build every member for the same data set"
        )
    for g in groups:
        if num_features is not None and g.setup.num_features != num_features:
            raise ValueError(
                f"members {g.names} take {g.setup.num_features} features but the "
                f"data have {num_features}; use the data set they were trained on"
            )
        w = g.params[max(k for k in g.params if k.startswith("W"))]  # the scores' layer
        if w.shape[0] != len(g.names) or w.shape[1] != g.setup.num_classes:
            raise ValueError(
                f"group {g.names} holds params of shape {w.shape}, expected "
                f"({len(g.names)}, {g.setup.num_classes}, ...)"
            )


# ----------------------------------------------------------------------------- training


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(
            f"ensemble size must be a positive integer, got {size!r}; set --config.ensemble.size"
        )


def _check_finite(history: dict, names: Sequence[str], what: str) -> None:
    ok = np.all(train.finite(history), axis=-1)
    bad = [n for n, v in zip(names, ok) if not v]
    if bad:
        raise FloatingPointError(
            f"members {bad} diverged (a NaN/inf loss or weight) with {what}; "
            "lower --config.optimizer.learning_rate"
        )


def train_seeds(
    key: PRNGKey,
    hparams: dict[str, Any],
    dataset: train.Data,
    setup: settings.Setup,
    size: int,
    mesh: Mesh | None = None,
) -> tuple[train.TrainState, dict[str, np.ndarray]]:
    """Trains ``size`` models from ``jax.random.split(key, size)`` as one vmapped ``fit``
    sharded over ``mesh`` (default: every process's devices; ``sharding.fit_split``).

    Returns:
      (TrainState, history) with a leading member axis of length ``size`` on every leaf, as
      numpy on every process (the state's ``key`` as raw key data).
    """
    _check_size(size)
    return sharding.fit_split(key, size, hparams, dataset, setup, mesh)


# ----------------------------------------------------------------------------- sweep trials

# A sweep workdir's trials.csv, read back (the sweep writes it: ``sweep_report``).
read_trials, top_trials = sweep_report.read_trials, sweep_report.top_trials


_SETUP_FIELDS = frozenset(f.name for f in dataclasses.fields(settings.Setup))


def trial_setup(
    setup: settings.Setup, hparams: dict[str, float], fields: dict[str, Any]
) -> tuple[settings.Setup, dict[str, float]]:
    """A trial's (Setup, hparams): the sweep's base ``setup`` and ``hparams`` with the trial's
    ``fields`` (``settings.CONFIG_PATHS`` names: hyperparameters, structure, ``seed``) on top."""
    hp = dict(hparams)
    changes = {}
    for name, value in fields.items():
        if name in settings.HPARAMS:
            hp[name] = float(value)
        elif name in _SETUP_FIELDS:
            changes[name] = type(getattr(setup, name))(value)  # as settings reads a config
        elif name != "seed":  # the trial's key, not part of its setup
            raise ValueError(f"trial field {name!r} is neither a hyperparameter nor a Setup field")
    if "ema_decay" in fields:  # a running average is kept when its decay is positive
        changes["ema"] = hp["ema_decay"] > 0.0
    return dataclasses.replace(setup, **changes), hp


def group_trials(
    trials: Sequence[dict], setup: settings.Setup, hparams: dict[str, float]
) -> list[tuple[settings.Setup, list[dict], list[dict]]]:
    """Groups trials by structure and minibatch-order seed: [(setup, trials, hparams per
    trial)], first-seen order. ``setup`` and ``hparams`` are the sweep's base ones."""
    groups: dict[tuple, tuple[list, list]] = {}
    for t in trials:
        trial, hp = trial_setup(setup, hparams, t["fields"])
        settings.validate(trial, hp)
        ts, hps = groups.setdefault((trial, t["order_seed"]), ([], []))
        ts.append(t)
        hps.append(hp)
    return [(s, ts, hps) for (s, _), (ts, hps) in groups.items()]


# ----------------------------------------------------------------------------- sources


def from_seeds(
    options: Options, dataset: data.Dataset, ema: bool = False
) -> tuple[list[Group], Group | None]:
    """``size`` seeds of ``options.setup`` and ``hparams`` as one vmapped fit: ([Group], raw
    Group if ``ema`` else None).

    With ``ema`` the members are the running averages of the weights and the raw final
    weights come back as the second element.
    """
    setup, hparams, seed, size = options.setup, options.hparams, options.seed, options.size
    if ema and hparams["ema_decay"] <= 0.0:
        raise ValueError(
            "source 'ema' needs a running average: set --config.train.ema_decay "
            "in (0, 1), e.g. 0.99"
        )
    settings.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    mesh = sharding.trial_mesh()
    device_data = train.to_device(dataset, mesh)
    state, history = train_seeds(jax.random.key(seed), hparams, device_data, setup, size, mesh)
    names = tuple(f"seed {seed}/{i}" for i in range(size))
    _check_finite(history, names, f"learning_rate={hparams['learning_rate']:g}")
    raw = Group(setup, state.params, names)
    if ema:
        return [Group(setup, state.ema, tuple(f"ema {n}" for n in names))], raw
    return [raw], None


def from_search(options: Options, dataset: data.Dataset) -> list[Group]:
    """The top ``size`` trials of the sweep in ``search_dir``, retrained, one vmapped fit per
    structure (each trial's values over the sweep's base ``setup`` and ``hparams``).

    A sweep's trials share their minibatch order (``order_seed``), so retrained as the sweep
    trained them they err alike; with ``own_order`` each draws its own order from its seed
    (`sharding.fit_trials` without ``order_seed``), as seeds do.
    """
    own_order, search_dir = options.own_order, options.search_dir
    trials = top_trials(search_dir, options.size, options.search_stages)
    mesh = sharding.trial_mesh()
    device_data = train.to_device(dataset, mesh)
    groups = []
    for setup, ts, hps in group_trials(trials, options.setup, options.hparams):
        settings.validate(setup, {}, num_train=dataset.x_train.shape[0])
        # As the sweep trained them: fit(key(seed), hp, ..., order_key=key(order_seed)).
        order_seed = None if own_order else ts[0]["order_seed"]
        state, history = sharding.fit_trials(
            [t["seed"] for t in ts], hps, device_data, setup, mesh, order_seed=order_seed
        )
        names = tuple(f"trial {t['trial']}" for t in ts)
        _check_finite(history, names, f"the hyperparameters of {search_dir}/trials.csv")
        got = np.asarray(history["val_accuracy"])[:, -1]
        for name, t, acc in zip(names, ts, got):
            if not own_order and abs(acc - t["val_accuracy"]) > 0.01:
                logging.warning(
                    "%s retrained to val accuracy %.4f but trials.csv records %.4f: "
                    "the data set or config differs from the sweep's",
                    name,
                    acc,
                    t["val_accuracy"],
                )
        groups.append(Group(setup, state.params, names))
        distributed.check_interrupt()
    return groups


def from_checkpoints(options: Options, dataset: data.Dataset) -> list[Group]:
    """The last ``size`` epoch checkpoints of the ``experiments.train`` workdir ``train_dir``,
    whose run had ``options.setup`` and ``hparams`` and trained on ``trained_on``."""
    size, train_dir, trained_on = options.size, options.train_dir, options.trained_on
    _check_size(size)
    if not train_dir:
        raise ValueError(
            "source 'checkpoints' needs a training workdir: set "
            "--config.ensemble.train_dir=<workdir of experiments.train>"
        )
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(
            f"training workdir {train_dir!r} does not exist; run "
            f"python -m experiments.train --workdir={train_dir} first"
        )
    if not os.path.exists(os.path.join(train_dir, "config.json")):
        raise FileNotFoundError(
            f"no config.json in {train_dir!r}; expected a workdir written "
            "by python -m experiments.train (config.json, checkpoints/)"
        )
    if trained_on and trained_on != dataset.name:
        raise ValueError(
            f"{train_dir!r} was trained on {trained_on!r}, not "
            f"{dataset.name!r}; evaluate its checkpoints on the data set they were "
            "trained on (experiments.ensemble loads it from its config.json)"
        )
    setup = options.setup
    ckpt_dir = os.path.join(train_dir, "checkpoints")
    epochs = checkpoints.steps(ckpt_dir)
    if size > len(epochs):
        raise ValueError(
            f"ensemble size {size} is larger than the {len(epochs)} checkpoints in "
            f"{ckpt_dir!r}; set --config.ensemble.size={len(epochs)} or less, "
            "or train for more epochs"
        )
    epochs = epochs[-size:]
    hp = settings.float32_hparams(options.hparams)
    state = train.init_state(jax.random.key(0), hp, setup, dataset.x_train.shape[0])
    like = train.to_checkpoint(state)
    try:
        params = [checkpoints.restore(ckpt_dir, e, like=like)["params"] for e in epochs]
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            f"the checkpoints in {ckpt_dir!r} do not hold a {setup.model} model for "
            f"{dataset.num_features} features and {dataset.num_classes} classes ({e}); "
            f"evaluate them on the data set they were trained on ({trained_on or dataset.name!r})"
        ) from e
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *params)
    return [Group(setup, stacked, tuple(f"epoch {e}" for e in epochs))]


def build_members(options: Options, dataset: data.Dataset) -> tuple[list[Group], Group | None]:
    """The member groups ``options`` name: ([Group], raw Group for source ``ema`` else None)."""
    source = options.source
    if source not in SOURCES:
        raise ValueError(f"unknown ensemble source {source!r}; valid: {', '.join(SOURCES)}")
    _check_size(options.size)
    groups, raw = _SOURCES[source](options, dataset)
    check_groups(groups, dataset.num_features, dataset.num_classes)
    return groups, raw


# Where members come from (``ensemble.source``): name -> builder of (groups, the raw final
# weights' group for "ema", else None).
_SOURCES = {
    "seeds": from_seeds,
    "search": lambda options, dataset: (from_search(options, dataset), None),
    "checkpoints": lambda options, dataset: (from_checkpoints(options, dataset), None),
    "ema": lambda options, dataset: from_seeds(options, dataset, ema=True),
}
SOURCES = tuple(_SOURCES)
