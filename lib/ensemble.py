"""Model ensembles: build members from seeds, a sweep, checkpoints or a weight average, and
evaluate them as one vmapped program.

A member group is a stack of parameter pytrees that share one structure (a leading member
axis on every leaf); its class scores are one ``jax.vmap`` of the score function (for linear
members, one wide matrix product ``x @ [W_1; ...; W_M]^T``). The ensemble's prediction
averages the members' softmax probabilities, ``p(x) = 1/M sum_m softmax(s_m(x))``, or their
scores, or takes a majority vote.

Sources of members (``config.ensemble.source``):

* ``seeds``: ``size`` models of one config from different initialisations, trained as one
  vmapped ``train.fit`` on shared data;
* ``search``: the top ``size`` complete trials of a sweep workdir's ``trials.csv`` (by
  validation accuracy), retrained from their hyperparameters and seeds, one vmapped ``fit``
  per structure (model, hidden size, epochs, optimizer, ...);
* ``checkpoints``: the last ``size`` epoch checkpoints of an ``experiments.train`` workdir;
* ``ema``: ``size`` seeds trained with a running average of the weights
  (``train.ema_decay`` > 0); the averaged weights are the members, and the raw final weights
  are evaluated alongside (``summary["raw"]``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from typing import Any, NamedTuple, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from lib import checkpoints, data, metrics, train  # noqa: E402
from lib.types import Array, Params, PRNGKey  # noqa: E402

SOURCES = ("seeds", "search", "checkpoints", "ema")
COMBINES = ("proba", "scores", "vote")

# Where each column of a sweep's trials.csv goes in a training config.
TRIAL_FIELDS = {
    "learning_rate": "optimizer.learning_rate", "mu": "optimizer.mu",
    "beta1": "optimizer.beta1", "beta2": "optimizer.beta2",
    "decay_rate": "optimizer.decay_rate", "eps": "optimizer.eps",
    "damping": "optimizer.damping", "reg": "loss.reg", "dropout": "model.dropout",
    "lr_decay": "schedule.decay", "lr_k": "schedule.k", "ema_decay": "train.ema_decay",
    "hidden": "model.hidden", "num_epochs": "train.num_epochs",
    "batch_size": "train.batch_size", "optimizer": "optimizer.name", "model": "model.name",
    "loss": "loss.name", "schedule": "schedule.name", "seed": "seed",
}
_INT_FIELDS = ("hidden", "num_epochs", "batch_size", "seed")
_STR_FIELDS = ("optimizer", "model", "loss", "schedule")
_PREFIXES = ("hparams.", "hparams/", "hparams_", "hp.", "hp_", "params_", "param_")


class Group(NamedTuple):
    """Members that share one structure and are evaluated by one vmapped call.

    Attributes:
      setup: their static structure (model, sizes, ...).
      params: stacked parameters: every leaf has a leading member axis of length M.
      names: one label per member, e.g. ``"seed 2"``, ``"trial 17"``, ``"epoch 30"``.
    """

    setup: train.Setup
    params: Params
    names: tuple[str, ...]


# ----------------------------------------------------------------------------- prediction


def _model_name(model: str | train.Setup) -> str:
    name = model.model if isinstance(model, train.Setup) else model
    if name not in train.MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(train.MODELS)}")
    return name


def _check_stacked(stacked_params: Params, x: Array) -> int:
    """The member count M; checks x is (N, D) and every leaf has the member axis."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"x must be 2-D of shape (N, D), got shape {getattr(x, 'shape', x)}; "
                         "flatten images with x.reshape(len(x), -1)")
    leaves = jax.tree.leaves(stacked_params)
    if not leaves or any(leaf.ndim < 2 for leaf in leaves):
        raise ValueError("stacked_params must carry a leading member axis on every leaf "
                         "(e.g. W of shape (M, K, D)); stack members with "
                         "jax.tree.map(lambda *p: jnp.stack(p), *members)")
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"stacked_params leaves disagree on the member count: {sorted(sizes)}")
    return sizes.pop()


def member_scores(stacked_params: Params, x: Array, model: str | train.Setup) -> Array:
    """Class scores of every member, ``jax.vmap`` of the score function: (M, N, K)."""
    _check_stacked(stacked_params, x)
    setup = train.Setup(1, 1, model=_model_name(model))
    return jax.vmap(train.predict, in_axes=(0, None, None))(stacked_params, x, setup)


def member_scores_linear_wide(stacked_params: Params, x: Array) -> Array:
    """Linear members' scores as one wide product: ``x @ [W_1; ...; W_M]^T`` -> (M, N, K)."""
    m = _check_stacked(stacked_params, x)
    w, b = stacked_params["W"], stacked_params["b"]
    _, k, d = w.shape
    if x.shape[1] != d:
        raise ValueError(f"x has {x.shape[1]} features but the members' W is {w.shape} "
                         f"(M, K, D); give x with {d} features")
    wide = x @ w.reshape(m * k, d).T + b.reshape(m * k)  # (N, M*K)
    return jnp.transpose(wide.reshape(x.shape[0], m, k), (1, 0, 2))


def combine(scores: Array, how: str = "proba") -> Array:
    """The ensemble's (N, K) class probabilities from members' scores (M, N, K).

    ``proba``: mean of the members' softmax; ``scores``: softmax of the mean score; ``vote``:
    the fraction of members voting for each class (ties go to the higher mean probability).
    """
    if how not in COMBINES:
        raise ValueError(f"unknown combine {how!r}; valid: {', '.join(COMBINES)}")
    if scores.ndim != 3:
        raise ValueError(f"scores must be (M, N, K) = (members, examples, classes), "
                         f"got shape {scores.shape}")
    proba = jnp.mean(jax.nn.softmax(scores, axis=-1), axis=0)
    if how == "proba":
        return proba
    if how == "scores":
        return jax.nn.softmax(jnp.mean(scores, axis=0), axis=-1)
    m, _, k = scores.shape
    votes = jnp.mean(jax.nn.one_hot(jnp.argmax(scores, axis=-1), k), axis=0)
    return votes + proba * (0.5 / m)  # < one vote: only breaks ties


def predict_proba(stacked_params: Params, x: Array, model: str | train.Setup) -> Array:
    """Mean of the members' softmax probabilities, vmapped over the members: (N, K)."""
    return combine(member_scores(stacked_params, x, model), "proba")


def predict_proba_linear_wide(stacked_params: Params, x: Array) -> Array:
    """``predict_proba`` for linear members through one (N, D) x (D, M*K) product."""
    m = _check_stacked(stacked_params, x)
    w, b = stacked_params["W"], stacked_params["b"]
    k, d = w.shape[1:]
    wide = (x @ w.reshape(m * k, d).T + b.reshape(m * k)).reshape(x.shape[0], m, k)
    return jnp.mean(jax.nn.softmax(wide, axis=-1), axis=1)


_wide_jit = jax.jit(member_scores_linear_wide)
_vmap_jit = jax.jit(member_scores, static_argnums=2)


@jax.jit
def _accuracies(scores: Array, y: Array) -> Array:
    return jnp.mean(jnp.argmax(scores, axis=-1) == y, axis=-1)


def stacked_scores(groups: Sequence[Group], x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Every member's scores on ``x`` (M, N, K), groups concatenated, in fixed-size chunks."""
    check_groups(groups)
    out = []
    for g in groups:
        fn = _wide_jit if g.setup.model == "linear" else _vmap_jit
        args = () if g.setup.model == "linear" else (g.setup.model,)
        n = x.shape[0]
        size = min(chunk, n)
        parts = []
        for start in range(0, n, size):
            xb = x[start:start + size]
            pad = size - xb.shape[0]  # pad the last chunk so every chunk shares one compile
            xb = np.pad(xb, ((0, pad), (0, 0))) if pad else xb
            parts.append(np.asarray(fn(g.params, xb, *args))[:, :size - pad])
        out.append(np.concatenate(parts, axis=1))
    return np.concatenate(out, axis=0)


def check_groups(groups: Sequence[Group], num_features: int | None = None,
                 num_classes: int | None = None) -> None:
    """Raises ValueError unless every group scores the same classes (and data, if given)."""
    if not groups:
        raise ValueError("an ensemble needs at least one member group")
    classes = {g.setup.num_classes for g in groups}
    if len(classes) > 1 or (num_classes is not None and classes != {num_classes}):
        detail = ", ".join(f"{g.names[0]}...: {g.setup.num_classes}" for g in groups)
        raise ValueError(
            f"ensemble members have incompatible class counts ({detail}"
            + (f"; the data have {num_classes}" if num_classes is not None else "")
            + "); build every member for the same data set")
    for g in groups:
        if num_features is not None and g.setup.num_features != num_features:
            raise ValueError(f"members {g.names} take {g.setup.num_features} features but the "
                             f"data have {num_features}; use the data set they were trained on")
        w = g.params["W" if g.setup.model == "linear" else "W2"]
        if w.shape[0] != len(g.names) or w.shape[1] != g.setup.num_classes:
            raise ValueError(f"group {g.names} holds params of shape {w.shape}, expected "
                             f"({len(g.names)}, {g.setup.num_classes}, ...)")


# ----------------------------------------------------------------------------- members

# One compiled program per Setup, reused across calls: keys batched, hparams and data shared
# (seeds), or keys and hparams batched (trials).
_fit_seeds = jax.jit(jax.vmap(train.fit, in_axes=(0, None, None, None)), static_argnums=3)
_fit_trials = jax.jit(jax.vmap(train.fit, in_axes=(0, 0, None, None)), static_argnums=3)


def _hp32(hparams: dict[str, Any]) -> dict[str, Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**train.DEFAULT_HPARAMS, **hparams}.items()}


def _check_finite(history: dict, names: Sequence[str], what: str) -> None:
    loss = np.asarray(history["train_loss"])[:, -1]
    bad = [n for n, v in zip(names, loss) if not np.isfinite(v)]
    if bad:
        raise FloatingPointError(f"members {bad} diverged (final train loss NaN/inf) with {what}; "
                                 "lower --config.optimizer.learning_rate")


def train_seeds(key: PRNGKey, hparams: dict[str, Any], dataset: train.Data,
                setup: train.Setup, size: int):
    """Trains ``size`` models from ``jax.random.split(key, size)`` as one vmapped ``fit``.

    Returns:
      (TrainState, history) with a leading member axis of length ``size`` on every leaf.
    """
    _check_size(size)
    return _fit_seeds(jax.random.split(key, size), _hp32(hparams), dataset, setup)


def train_trials(seeds: Sequence[int], hparams: Sequence[dict[str, Any]], dataset: train.Data,
                 setup: train.Setup):
    """Trains one model per (seed, hparams) row, ``fit(jax.random.key(seed), ...)``, vmapped."""
    if len(seeds) != len(hparams) or not seeds:
        raise ValueError(f"need one seed per hparams row, got {len(seeds)} and {len(hparams)}")
    keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
    rows = [_hp32(h) for h in hparams]
    stacked = {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}
    return _fit_trials(keys, stacked, dataset, setup)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"ensemble size must be a positive integer, got {size!r}; "
                         "set --config.ensemble.size")


def _parse(name: str, value: str) -> Any:
    if name in _STR_FIELDS:
        return value
    number = float(value)
    return int(round(number)) if name in _INT_FIELDS else number


def read_trials(search_dir: str) -> list[dict[str, Any]]:
    """The complete trials of a sweep workdir, best validation accuracy first.

    Reads ``<search_dir>/trials.csv`` (as experiments.sweep writes it) and relies on the
    columns ``status`` (``complete`` rows are kept) and ``val_accuracy``, and where present
    ``seed`` (the trial's key is ``jax.random.key(seed)``), ``trial`` and ``stage`` (for the
    name), and every column named as in ``TRIAL_FIELDS`` (e.g. ``num_epochs``,
    ``learning_rate``, ``reg``, ``hidden``, ``optimizer``; optionally prefixed
    ``hparams.``/``params_``): the hyperparameters. Other columns are ignored. Each returned
    dict has ``trial``, ``val_accuracy``, ``seed`` (or None) and ``fields`` (TRIAL_FIELDS
    name -> value).
    """
    if not search_dir:
        raise ValueError("source 'search' needs a sweep workdir: set "
                         "--config.ensemble.search_dir=<workdir of experiments.sweep>")
    path = os.path.join(search_dir, "trials.csv")
    if not os.path.isdir(search_dir):
        raise FileNotFoundError(f"sweep workdir {search_dir!r} does not exist; run "
                                f"python -m experiments.sweep --workdir={search_dir} first")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no trials.csv in {search_dir!r} (expected one row per trial, "
                                "written by experiments.sweep); finish the sweep or point "
                                "--config.ensemble.search_dir at a finished one")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if not rows:
        raise ValueError(f"{path} holds no trials; run the sweep first")
    for needed in ("status", "val_accuracy"):
        if needed not in columns:
            raise ValueError(f"{path} has no {needed!r} column (columns: {sorted(columns)}); "
                             "expected a trials.csv written by experiments.sweep")
    trials = []
    for i, row in enumerate(rows):
        if row["status"].strip().lower() not in ("complete", "completed"):
            continue
        fields = {}
        for column, value in row.items():
            name = column
            for prefix in _PREFIXES:
                name = name[len(prefix):] if name.startswith(prefix) else name
            if name in TRIAL_FIELDS and value not in (None, "", "nan", "None"):
                fields[name] = _parse(name, value)
        number = row.get("trial") or row.get("number") or str(i)
        if row.get("stage") not in (None, ""):  # trial numbers may restart at every stage
            number = f"{number} (stage {row['stage']})"
        trials.append({"trial": number, "val_accuracy": float(row["val_accuracy"]),
                       "seed": fields.get("seed"), "fields": fields})
    trials.sort(key=lambda t: -t["val_accuracy"])  # stable: ties keep file order
    return trials


def top_trials(search_dir: str, size: int) -> list[dict[str, Any]]:
    """The ``size`` complete trials with the highest validation accuracy."""
    _check_size(size)
    trials = read_trials(search_dir)
    if size > len(trials):
        raise ValueError(f"ensemble size {size} is larger than the {len(trials)} complete trials "
                         f"in {search_dir!r}; set --config.ensemble.size={len(trials)} or less, "
                         "or run more trials")
    return trials[:size]


def trial_config(base: ml_collections.ConfigDict, trial: dict) -> ml_collections.ConfigDict:
    """``base`` with a trial's hyperparameters written into their config fields."""
    config = ml_collections.ConfigDict(base.to_dict())
    for name, value in trial["fields"].items():
        *parents, leaf = TRIAL_FIELDS[name].split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def group_trials(trials: Sequence[dict], base: ml_collections.ConfigDict, num_features: int,
                 num_classes: int) -> list[tuple[train.Setup, list[dict], list[dict]]]:
    """Groups trials by structure: [(setup, trials, hparams per trial)], first-seen order."""
    groups: dict[train.Setup, tuple[list, list]] = {}
    for t in trials:
        config = trial_config(base, t)
        setup = train.setup_from_config(config, num_features, num_classes)
        hp = train.hparams_from_config(config)
        train.validate(setup, hp)
        t = {**t, "seed": int(config.seed)}
        groups.setdefault(setup, ([], []))
        groups[setup][0].append(t)
        groups[setup][1].append(hp)
    return [(s, ts, hps) for s, (ts, hps) in groups.items()]


def _source_config(workdir: str, config: ml_collections.ConfigDict,
                   required: bool) -> ml_collections.ConfigDict:
    """The config.json of a sweep/training workdir (``config`` itself if there is none)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        if required:
            raise FileNotFoundError(f"no config.json in {workdir!r}; expected a workdir written "
                                    "by python -m experiments.train (config.json, checkpoints/)")
        return config
    source = ml_collections.ConfigDict(metrics.read_json(path))
    if config.dataset.get("data_dir"):  # data folders move: the ensemble's path wins
        source.dataset.data_dir = config.dataset.data_dir
    return source


def data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config whose ``dataset`` (and split ``seed``) the members were trained on.

    Sources ``search`` and ``checkpoints`` evaluate on the data set of the sweep or training
    workdir they read (its config.json; ``--config.dataset.data_dir``, when set, overrides the
    folder); ``seeds`` and ``ema`` on the ensemble config's own.
    """
    source = config.ensemble.get("source")
    directory = {"search": config.ensemble.get("search_dir"),
                 "checkpoints": config.ensemble.get("train_dir")}.get(source)
    if not directory or not os.path.exists(os.path.join(directory, "config.json")):
        return config
    return _source_config(directory, config, required=True)


def from_seeds(config: ml_collections.ConfigDict, dataset: data.Dataset, ema: bool = False):
    """``size`` seeds of the config as one vmapped fit: ([Group], raw Group or None)."""
    setup = train.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = train.hparams_from_config(config)
    if ema and hparams["ema_decay"] <= 0.0:
        raise ValueError("source 'ema' needs a running average: set --config.train.ema_decay "
                         "in (0, 1), e.g. 0.99")
    train.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    size = config.ensemble.size
    state, history = train_seeds(jax.random.key(int(config.seed)), hparams,
                                 train.to_device(dataset), setup, size)
    names = tuple(f"seed {config.seed}/{i}" for i in range(size))
    _check_finite(history, names, f"learning_rate={hparams['learning_rate']:g}")
    raw = Group(setup, state.params, names)
    if ema:
        return [Group(setup, state.ema, tuple(f"ema {n}" for n in names))], raw
    return [raw], None


def from_search(config: ml_collections.ConfigDict, dataset: data.Dataset) -> list[Group]:
    """The top ``size`` sweep trials, retrained, one vmapped fit per structure."""
    search_dir = config.ensemble.get("search_dir")
    trials = top_trials(search_dir, config.ensemble.size)
    base = _source_config(search_dir, config, required=False)
    device_data = train.to_device(dataset)
    groups = []
    for setup, ts, hps in group_trials(trials, base, dataset.num_features, dataset.num_classes):
        train.validate(setup, {}, num_train=dataset.x_train.shape[0])
        state, history = train_trials([t["seed"] for t in ts], hps, device_data, setup)
        names = tuple(f"trial {t['trial']}" for t in ts)
        _check_finite(history, names, f"the hyperparameters of {search_dir}/trials.csv")
        got = np.asarray(history["val_accuracy"])[:, -1]
        for name, t, acc in zip(names, ts, got):
            if abs(acc - t["val_accuracy"]) > 0.01:
                logging.warning("%s retrained to val accuracy %.4f but trials.csv records %.4f: "
                                "the data set or config differs from the sweep's", name, acc,
                                t["val_accuracy"])
        groups.append(Group(setup, state.params, names))
    return groups


def from_checkpoints(config: ml_collections.ConfigDict, dataset: data.Dataset) -> list[Group]:
    """The last ``size`` epoch checkpoints of one ``experiments.train`` workdir."""
    size = config.ensemble.size
    _check_size(size)
    train_dir = config.ensemble.get("train_dir")
    if not train_dir:
        raise ValueError("source 'checkpoints' needs a training workdir: set "
                         "--config.ensemble.train_dir=<workdir of experiments.train>")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"training workdir {train_dir!r} does not exist; run "
                                f"python -m experiments.train --workdir={train_dir} first")
    source = _source_config(train_dir, config, required=True)
    if source.dataset.name != dataset.name:
        raise ValueError(f"{train_dir!r} was trained on {source.dataset.name!r}, not "
                         f"{dataset.name!r}; evaluate its checkpoints on the data set they were "
                         "trained on (experiments.ensemble loads it from its config.json)")
    setup = train.setup_from_config(source, dataset.num_features, dataset.num_classes)
    ckpt_dir = os.path.join(train_dir, "checkpoints")
    epochs = checkpoints.steps(ckpt_dir)
    if size > len(epochs):
        raise ValueError(f"ensemble size {size} is larger than the {len(epochs)} checkpoints in "
                         f"{ckpt_dir!r}; set --config.ensemble.size={len(epochs)} or less, "
                         "or train for more epochs")
    epochs = epochs[-size:]
    hp = _hp32(train.hparams_from_config(source))
    state = train.init_state(jax.random.key(0), hp, setup, dataset.x_train.shape[0])
    like = {"params": state.params, "opt_state": state.opt_state, "ema": state.ema,
            "ema_state": state.ema_state, "key": jax.random.key_data(state.key),
            "epoch": state.epoch}
    try:
        members = [checkpoints.restore(ckpt_dir, e, like=like)["params"] for e in epochs]
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            f"the checkpoints in {ckpt_dir!r} do not hold a {setup.model} model for "
            f"{dataset.num_features} features and {dataset.num_classes} classes ({e}); "
            f"evaluate them on the data set they were trained on ({source.dataset.name!r})") from e
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *members)
    return [Group(setup, stacked, tuple(f"epoch {e}" for e in epochs))]


def build_members(config: ml_collections.ConfigDict, dataset: data.Dataset):
    """The member groups a config names: ([Group], raw Group for source ``ema`` else None)."""
    source = config.ensemble.source
    if source not in SOURCES:
        raise ValueError(f"unknown ensemble source {source!r}; valid: {', '.join(SOURCES)}")
    _check_size(config.ensemble.size)
    if source in ("seeds", "ema"):
        groups, raw = from_seeds(config, dataset, ema=source == "ema")
    elif source == "search":
        groups, raw = from_search(config, dataset), None
    else:
        groups, raw = from_checkpoints(config, dataset), None
    check_groups(groups, dataset.num_features, dataset.num_classes)
    return groups, raw


# ----------------------------------------------------------------------------- evaluation


def evaluate(groups: Sequence[Group], dataset: data.Dataset, how: str = "proba") -> dict:
    """Each member's and the ensemble's accuracy on train/val/test, and the gains.

    The best member is the one with the highest validation accuracy; gains are the
    ensemble's accuracy minus the mean member's and minus the best member's.
    """
    check_groups(groups, dataset.num_features, dataset.num_classes)
    names = [n for g in groups for n in g.names]
    members = [{"name": n} for n in names]
    ensemble = {}
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        s = jnp.asarray(stacked_scores(groups, x))
        member_acc = np.asarray(_accuracies(s, y))
        for m, a in zip(members, member_acc):
            m[f"{split}_accuracy"] = float(a)
        pred = jnp.argmax(combine(s, how), axis=-1)
        ensemble[f"{split}_accuracy"] = float(jnp.mean(pred == y))
    val = np.array([m["val_accuracy"] for m in members])
    best = members[int(np.argmax(val))]
    splits = ("val_accuracy", "test_accuracy")
    mean = {k: float(np.mean([m[k] for m in members])) for k in splits}
    return {
        "members": members, "ensemble": ensemble, "combine": how, "size": len(members),
        "mean_member": mean,
        "best_member": {"name": best["name"], **{k: best[k] for k in splits}},
        "gain_over_mean": {k: ensemble[k] - mean[k] for k in splits},
        "gain_over_best": {k: ensemble[k] - best[k] for k in splits},
    }


def format_table(result: dict) -> str:
    """The evaluation as a plain-text table (one row per member, then the summary rows)."""
    rows = [(m["name"], m["val_accuracy"], m["test_accuracy"]) for m in result["members"]]
    rows += [("mean member", *result["mean_member"].values()),
             (f"best member ({result['best_member']['name']})",
              result["best_member"]["val_accuracy"], result["best_member"]["test_accuracy"]),
             (f"ensemble ({result['combine']})", result["ensemble"]["val_accuracy"],
              result["ensemble"]["test_accuracy"])]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'member':<{width}}{'val':>8}{'test':>8}"]
    lines += [f"{n:<{width}}{v:8.4f}{t:8.4f}" for n, v, t in rows]
    for key in ("gain_over_mean", "gain_over_best"):
        g = result[key]
        lines.append(f"{key.replace('_', ' '):<{width}}{g['val_accuracy']:+8.4f}"
                     f"{g['test_accuracy']:+8.4f}")
    return "\n".join(lines)


def plot_members(result: dict, path: str) -> None:
    """Member accuracies (points) against the ensemble's and the mean member's (lines)."""
    members = result["members"]
    idx = np.arange(len(members))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(members) + 3), 4))
    for split, color in (("val", "C0"), ("test", "C1")):
        key = f"{split}_accuracy"
        ax.plot(idx, [m[key] for m in members], "o", color=color, label=f"member {split}")
        ax.axhline(result["ensemble"][key], color=color, label=f"ensemble {split}")
        ax.axhline(result["mean_member"][key], color=color, ls="--", lw=0.8,
                   label=f"mean member {split}")
    ax.set_xticks(idx, [m["name"] for m in members], rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="accuracy", title=f"{len(members)} members vs ensemble ({result['combine']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_ensemble(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Builds the ensemble a config names, evaluates it and writes ``workdir``.

    Writes config.json, summary.json (``members``, ``ensemble``, top-level
    ``train/val/test_accuracy`` and ``seconds`` of the ensemble, gains; ``raw`` for source
    ``ema``) and ensemble.png, and prints the table. Everything is validated and built
    before the workdir is touched.
    """
    how = config.ensemble.get("combine", "proba")
    if how not in COMBINES:
        raise ValueError(f"unknown combine {how!r}; valid: {', '.join(COMBINES)}")
    config_dict = config.to_dict()
    old = os.path.join(workdir, "config.json")
    if os.path.exists(old) and metrics.read_json(old) != metrics._plain(config_dict):
        raise ValueError(f"workdir {workdir!r} holds an ensemble of a different config; rerun "
                         "with the same config, or choose a new --workdir")
    dataset = train.load_data(data_config(config))
    t0 = time.perf_counter()
    groups, raw = build_members(config, dataset)
    jax.block_until_ready([g.params for g in groups])
    build_seconds = time.perf_counter() - t0
    result = evaluate(groups, dataset, how)
    summary = {
        **result, "source": config.ensemble.source,
        **{f"{s}_accuracy": result["ensemble"][f"{s}_accuracy"] for s in ("train", "val", "test")},
        "build_seconds": build_seconds, "seconds": time.perf_counter() - t0,
        "groups": [{"names": list(g.names), "setup": dataclasses.asdict(g.setup)}
                   for g in groups],
    }
    if raw is not None:
        summary["raw"] = evaluate([raw], dataset, how)
    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), config_dict)
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    plot_members(result, os.path.join(workdir, "ensemble.png"))
    table = format_table(result)
    if raw is not None:
        table += "\n\nraw weights (no running average):\n" + format_table(summary["raw"])
    print(table)
    logging.info("ensemble of %d (%s, %s): val %.4f  test %.4f  (%.1fs)", result["size"],
                 summary["source"], how, summary["val_accuracy"], summary["test_accuracy"],
                 summary["seconds"])
    return summary
