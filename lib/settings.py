"""A run's settings: its static ``Setup``, its hyperparameters, their checks, and reading
them from an ml_collections config.

Structure that changes the shapes or the program (model, loss, optimizer, schedule, hidden
size, epochs, batch size) lives in a frozen :class:`Setup`; every number that does not
(learning rate, reg, mu, betas, decay rates, dropout, EMA decay, ...) is a scalar in the
``hparams`` dict (``HPARAMS``, with ``DEFAULT_HPARAMS``), so one compiled program serves
every value and ``jax.vmap`` over a batch of hparams (or of keys) trains many models at
once on shared data. ``validate`` checks both before anything runs.

Only the top-level experiment functions (``train.train_and_evaluate``, ``search.run_search``,
``ensemble.run_ensemble``) read configs; everything below them takes plain arguments. The
config fields are those of ``configs/common.py``; ``CONFIG_PATHS`` says where each
hyperparameter lives.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lib import data, losses, model, schedules, scores, updates

# Names of the registries' entries, as of import (the checks below read the registries
# themselves, so an entry registered later is accepted too).
MODELS = tuple(sorted(scores.MODELS))
LOSSES = tuple(sorted(losses.LOSSES))
FULL_BATCH = tuple(n for n, o in updates.OPTIMIZERS.items() if o.full_batch)  # one step/epoch
SCHEDULES = tuple(schedules.SCHEDULES)

# Every scalar hyperparameter that may be traced (and so vmapped over), with its default.
DEFAULT_HPARAMS = {
    "learning_rate": 1e-2,  # update rules
    "reg": 0.0,  # L2 strength: loss += reg * sum(W**2)
    "mu": 0.9,  # momentum, nesterov
    "beta1": 0.9,  # adam
    "beta2": 0.999,  # adam
    "decay_rate": 0.99,  # rmsprop cache decay
    "eps": 1e-8,  # adagrad, rmsprop, adam
    "damping": 0.0,  # newton
    "dropout": 0.0,  # two_layer: probability of dropping a hidden unit
    "lr_decay": 0.5,  # step schedule: factor applied every `schedule_every` epochs
    "lr_k": 0.1,  # exponential (lr0 e^{-k t}) and 1/t (lr0 / (1 + k t)) schedules, t in epochs
    "ema_decay": 0.0,  # running average of the weights (used when Setup.ema)
}
HPARAMS = tuple(DEFAULT_HPARAMS)

# Where each hyperparameter, structural choice and the seed live in a training config.
CONFIG_PATHS = {
    "learning_rate": "optimizer.learning_rate",
    "mu": "optimizer.mu",
    "beta1": "optimizer.beta1",
    "beta2": "optimizer.beta2",
    "decay_rate": "optimizer.decay_rate",
    "eps": "optimizer.eps",
    "damping": "optimizer.damping",
    "reg": "loss.reg",
    "dropout": "model.dropout",
    "lr_decay": "schedule.decay",
    "lr_k": "schedule.k",
    "ema_decay": "train.ema_decay",
    "hidden": "model.hidden",
    "num_epochs": "train.num_epochs",
    "batch_size": "train.batch_size",
    "optimizer": "optimizer.name",
    "model": "model.name",
    "loss": "loss.name",
    "schedule": "schedule.name",
    "seed": "seed",
}


@dataclasses.dataclass(frozen=True)
class Setup:
    """The static structure of a training run (hashable; changing it recompiles)."""

    num_features: int
    num_classes: int
    model: str = "linear"
    hidden: int = 100
    loss: str = "softmax"
    margin: float = 1.0
    optimizer: str = "sgd"
    schedule: str = "constant"
    schedule_every: int = 1  # epochs between step decays
    num_epochs: int = 10
    batch_size: int = 200
    ema: bool = False  # keep a running average of the weights
    train_eval_size: int = 1000  # training examples scored for the per-epoch train accuracy


def _check_name(kind: str, name: str, valid) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind} names: {', '.join(sorted(valid))}")


def optimizers() -> tuple[str, ...]:
    """Every optimizer name ``Setup.optimizer`` accepts (the keys of ``updates.OPTIMIZERS``)."""
    return tuple(sorted(updates.OPTIMIZERS))


def is_full_batch(setup: Setup) -> bool:
    """Whether ``setup``'s optimizer takes one full-batch step per epoch (newton, lbfgs)."""
    return updates.get_optimizer(setup.optimizer).full_batch


def _optimizer_hparams() -> dict[str, tuple[str, ...]]:
    """Which hyperparameters each optimizer reads (``updates.OPTIMIZERS``' ``hparams``)."""
    return {name: opt.hparams for name, opt in updates.OPTIMIZERS.items()}


def _schedule_hparams() -> dict[str, tuple[str, ...]]:
    """Which hyperparameters each schedule reads besides the learning rate."""
    return {name: entry.hparams for name, entry in schedules.SCHEDULES.items()}


# The registries' tables of which optimizer and which schedule reads which hyperparameter,
# as of import (lbfgs searches its own step and newton's is the full step, so neither reads
# learning_rate, nor so a schedule's fields).
OPTIMIZER_HPARAMS = _optimizer_hparams()
SCHEDULE_HPARAMS = _schedule_hparams()


def unused_reason(name: str, setup: Setup) -> str | None:
    """Why a run of ``setup`` ignores hyperparameter ``name``, with the fix (None when the run
    reads it), e.g. ``"only the optimizers adam use beta1; set --config.optimizer.name=adam"``.
    """
    reads, schedule_reads = _optimizer_hparams(), _schedule_hparams()
    by_optimizer = {n for names in reads.values() for n in names}
    if name in by_optimizer and name not in reads[setup.optimizer]:
        users = [o for o, names in reads.items() if name in names]
        return (
            f"only the optimizers {', '.join(users)} use {name}; set "
            f"--config.optimizer.name={users[0]} (or search it in search.space.optimizer)"
        )
    by_schedule = {n for names in schedule_reads.values() for n in names}
    if name in by_schedule:
        if "learning_rate" not in reads[setup.optimizer]:
            return (
                f"{setup.optimizer} takes no learning rate, so no schedule's {name}; set "
                "--config.optimizer.name to a minibatch optimizer, e.g. sgd"
            )
        if name not in schedule_reads[setup.schedule]:
            users = [s for s, names in schedule_reads.items() if name in names]
            return (
                f"only the schedules {', '.join(users)} use {name}, the config's schedule is "
                f"{setup.schedule}; set --config.schedule.name={users[0]}"
            )
    if name == "ema_decay" and not setup.ema:
        return (
            "the config keeps no running average of the weights (EMA off), so ema_decay is "
            "ignored; set --config.train.ema_decay to a positive value (which turns EMA on)"
        )
    m = scores.model(setup.model)
    if (name == "dropout" and not m.dropout) or (name == "hidden" and name not in m.sizes):
        users = [n for n, e in scores.MODELS.items() if e.dropout or name in e.sizes]
        return f"the {setup.model} model has no {name}; set --config.model.name={users[0]}"
    return None


# name: (low, high, low inclusive, high inclusive); None = unbounded.
_RANGES = {
    "learning_rate": (0.0, None, False, False),
    "reg": (0.0, None, True, False),
    "mu": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, True, False),
    "beta2": (0.0, 1.0, True, False),
    "decay_rate": (0.0, 1.0, False, False),
    "eps": (0.0, None, False, False),
    "damping": (0.0, None, True, False),
    "dropout": (0.0, 1.0, True, False),
    "lr_decay": (0.0, 1.0, False, True),
    "lr_k": (0.0, None, True, False),
    "ema_decay": (0.0, 1.0, True, False),
    "margin": (0.0, None, False, False),
}
# Setup fields that must be >= 1, and where each is set in a config.
_COUNTS = {
    "num_epochs": "train.num_epochs",
    "batch_size": "train.batch_size",
    "hidden": "model.hidden",
    "schedule_every": "schedule.every",
    "train_eval_size": "train.train_eval_size",
}


def _check_range(name: str, value: Any, flag: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    value = np.asarray(value)
    low, high, low_in, high_in = _RANGES[name]
    bad = ~np.isfinite(value) | ((value < low) if low_in else (value <= low))
    if high is not None:
        bad |= (value > high) if high_in else (value >= high)
    if np.any(bad):
        interval = (
            ("[" if low_in else "(")
            + f"{low:g}, "
            + (f"{high:g}" + ("]" if high_in else ")") if high is not None else "inf)")
        )
        raise ValueError(
            f"{name}={value} is out of range: set --config.{flag} to a value in {interval}"
        )


def validate(setup: Setup, hparams: dict[str, Any], num_train: int | None = None) -> None:
    """Checks names, sizes and the ranges of concrete hyperparameters; raises ValueError.

    Traced hyperparameters (inside jit or vmap) are not checked.
    """
    _check_name("model", setup.model, scores.MODELS)
    _check_name("loss", setup.loss, losses.LOSSES)
    _check_name("optimizer", setup.optimizer, updates.OPTIMIZERS)
    _check_name("schedule", setup.schedule, schedules.SCHEDULES)
    unknown = set(hparams) - set(HPARAMS)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}; valid: {', '.join(HPARAMS)}")
    for name, flag in _COUNTS.items():
        if getattr(setup, name) < 1:
            raise ValueError(f"{name}={getattr(setup, name)} must be >= 1: set --config.{flag}")
    _check_range("margin", setup.margin, "loss.margin")
    optimizer = updates.get_optimizer(setup.optimizer)
    full_batch = optimizer.full_batch
    if num_train is not None and not full_batch and setup.batch_size > num_train:
        raise ValueError(
            f"batch_size {setup.batch_size} is larger than the {num_train} training examples; "
            f"set --config.train.batch_size to at most {num_train}"
        )
    size = num_params(setup) if optimizer.max_params else 0
    if optimizer.max_params and size > optimizer.max_params:
        raise ValueError(
            f"{setup.optimizer} forms the {size}x{size} Hessian, too large here; use optimizer lbfgs "
            "(the practical second-order method) or a smaller model"
        )
    for name, value in hparams.items():
        if name != "learning_rate" or name in optimizer.hparams:
            _check_range(name, value, CONFIG_PATHS[name])
    dropout = hparams.get("dropout", 0.0)
    if (
        full_batch
        and scores.model(setup.model).dropout
        and not isinstance(dropout, jax.core.Tracer)
        and np.any(np.asarray(dropout) > 0)
    ):
        raise ValueError(
            f"{setup.optimizer} takes full-batch steps without dropout; set "
            "--config.model.dropout=0 or use a minibatch optimizer"
        )


def float32_hparams(hparams: dict[str, Any]) -> dict[str, jax.Array]:
    """Every hyperparameter (its default where ``hparams`` leaves it out) as a float32
    scalar: the arguments a compiled epoch or ``fit`` takes, one program for every value."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**DEFAULT_HPARAMS, **hparams}.items()}


def num_params(setup: Setup) -> int:
    """Number of parameters of the model ``setup`` describes."""
    return model.num_params(setup)


def setup_from_config(
    config: ml_collections.ConfigDict, num_features: int, num_classes: int
) -> Setup:
    return Setup(
        num_features=num_features,
        num_classes=num_classes,
        model=config.model.name,
        hidden=int(config.model.get("hidden", 100)),
        loss=config.loss.name,
        margin=float(config.loss.get("margin", 1.0)),
        optimizer=config.optimizer.name,
        schedule=config.schedule.get("name", "constant"),
        schedule_every=int(config.schedule.get("every", 1)),
        num_epochs=int(config.train.num_epochs),
        batch_size=int(config.train.batch_size),
        ema=float(config.train.get("ema_decay", 0.0)) > 0.0,
        train_eval_size=int(config.train.get("train_eval_size", 1000)),
    )


def get_field(config: ml_collections.ConfigDict, path: str, default: Any = None) -> Any:
    """``config`` at a dotted ``path`` (``default`` where a part is missing)."""
    node = config
    for part in path.split("."):
        if part not in node:
            return default
        node = node[part]
    return node


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
    """Sets ``config`` at a dotted ``path`` (the parent fields must exist)."""
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


# How one training run splits over the devices (``experiments.train``): a rerun may change
# them, a workdir written before they existed lacks them, and sweeps and ensembles refuse them.
DEVICE_SPLITS = ("train.data_parallel", "train.shard_data")


def check_no_data_parallel(config: ml_collections.ConfigDict, instead: str) -> None:
    """``DEVICE_SPLITS`` split one training run's minibatches and rows
    (``experiments.train``); a sweep or an ensemble, which spreads ``instead`` over the
    devices, refuses them."""
    for field in DEVICE_SPLITS:
        if get_field(config, field, False):
            raise ValueError(
                f"{field} is for experiments.train: this experiment spreads {instead} "
                f"over every device instead; set --config.{field}=False"
            )


def hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The traced hyperparameters a config sets (defaults for what it leaves out)."""
    found = {k: get_field(config, CONFIG_PATHS[k]) for k in HPARAMS}
    return {k: float(v) if v is not None else DEFAULT_HPARAMS[k] for k, v in found.items()}


def load_data(config: ml_collections.ConfigDict) -> data.Dataset:
    """The data set a config names, preprocessed as ``dataset.preprocess`` says (raises a
    clear error before anything is written)."""
    ds = config.dataset
    how = ds.get("preprocess", "center")
    if how not in PREPROCESS:
        raise ValueError(
            f"unknown dataset.preprocess {how!r}; valid: {', '.join(PREPROCESS)} "
            "(e.g. --config.dataset.preprocess=auto)"
        )
    loaded = data.load(
        ds.name,
        ds.get("data_dir") or None,
        seed=int(ds.get("split_seed", 0)),
        num_train=ds.get("num_train"),
        num_val=ds.get("num_val"),
        scale=float(ds.get("scale", 1.0)),
    )
    return preprocessed(loaded, how)


# dataset.preprocess: how features are put on one scale after centring on the training mean.
PREPROCESS = ("center", "standardize", "auto")


def preprocess_choice(dataset: data.Dataset, how: str) -> str:
    """What ``how`` means for ``dataset``: ``auto`` is ``pixels`` (integer pixels, scaled
    by one over the largest training pixel) or ``standardize`` (any other features)."""
    if how != "auto":
        return how
    return "pixels" if dataset.train_pixels is not None else "standardize"


def preprocessed(dataset: data.Dataset, how: str) -> data.Dataset:
    """``dataset`` (centred, times ``dataset.scale``) put on one scale as ``how`` says.

    ``center``: as it is. ``standardize``: every feature divided by its training standard
    deviation (constant features keep theirs). ``auto`` picks (``preprocess_choice``):
    integer pixels get ``scale = 1 / max pixel`` (digits 1/16, CIFAR-10 1/255), so a
    configured scale is replaced; other features are standardised.
    """
    choice = preprocess_choice(dataset, how)
    if choice == "center":
        return dataset
    x_train, x_val, x_test = dataset.x_train, dataset.x_val, dataset.x_test
    if choice == "pixels":
        scale = 1.0 / max(1.0, float(dataset.train_pixels.max()))
        ratio = np.float32(scale / dataset.scale)
        return dataclasses.replace(  # the training rows from the pixels: Pixels' bits
            dataset,
            x_train=data.preprocess(dataset.train_pixels, dataset.mean, scale),
            x_val=x_val if ratio == 1 else x_val * ratio,
            x_test=x_test if ratio == 1 else x_test * ratio,
            scale=scale,
        )
    std = x_train.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-12 * max(1.0, float(std.max())), std, 1.0).astype(np.float32)
    return dataclasses.replace(
        dataset,
        x_train=x_train / std,
        x_val=x_val / std,
        x_test=x_test / std,
        train_pixels=None,  # per-feature scales: the rows are no longer pixels times one scale
    )
