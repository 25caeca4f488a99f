"""Model ensembles: vmapped prediction, combination rules, evaluation and the experiment.

A member group (``lib.members.Group``) is a stack of parameter pytrees that share one
structure (a leading member axis on every leaf); its class scores are one ``jax.vmap`` of the
score function (for linear members, one wide matrix product ``x @ [W_1; ...; W_M]^T``). The
ensemble's prediction averages the members' softmax probabilities,
``p(x) = 1/M sum_m softmax(s_m(x))``, or their scores, or takes a majority vote.

``run_ensemble`` builds the members a config names (``member_inputs`` turns the config into
plain ``lib.members.Options``; ``lib.members.build_members``: seeds, a sweep's top trials, a
training run's last checkpoints, or running weight averages), evaluates them and the
ensemble, and writes the workdir. It also runs as several processes of one multi-process
run (``lib.distributed``): the members' fits are sharded over every process's devices, every
process evaluates the gathered members, and process 0 alone writes the workdir.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from lib import data, distributed, members, metrics, plots, scores, settings
from lib import model as model_lib
from lib.types import Array, Params

# ----------------------------------------------------------------------------- prediction


def _model_name(model: str | settings.Setup) -> str:
    name = model.model if isinstance(model, settings.Setup) else model
    scores.model(name)  # raises ValueError, listing the valid names, for an unknown one
    return name


def _check_combine(how: str) -> None:
    if how not in COMBINES:
        raise ValueError(f"unknown combine {how!r}; valid: {', '.join(COMBINES)}")


def _check_stacked(stacked_params: Params, x: Array) -> int:
    """The member count M; checks x is (N, D) and every leaf has the member axis."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(
            f"x must be 2-D of shape (N, D), got shape {getattr(x, 'shape', x)}; "
            "flatten images with x.reshape(len(x), -1)"
        )
    leaves = jax.tree.leaves(stacked_params)
    if not leaves or any(leaf.ndim < 2 for leaf in leaves):
        raise ValueError(
            "stacked_params must carry a leading member axis on every leaf "
            "(e.g. W of shape (M, K, D)); stack members with "
            "jax.tree.map(lambda *p: jnp.stack(p), *members)"
        )
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"stacked_params leaves disagree on the member count: {sorted(sizes)}")
    return sizes.pop()


def member_scores(stacked_params: Params, x: Array, model: str | settings.Setup) -> Array:
    """Class scores of every member, ``jax.vmap`` of the score function: (M, N, K)."""
    _check_stacked(stacked_params, x)
    name = _model_name(model)
    return jax.vmap(lambda p: model_lib.predict(p, x, name))(stacked_params)


def member_scores_linear_wide(stacked_params: Params, x: Array) -> Array:
    """Linear members' scores as one wide product: ``x @ [W_1; ...; W_M]^T`` -> (M, N, K)."""
    m = _check_stacked(stacked_params, x)
    w, b = stacked_params["W"], stacked_params["b"]
    _, k, d = w.shape
    if x.shape[1] != d:
        raise ValueError(
            f"x has {x.shape[1]} features but the members' W is {w.shape} "
            f"(M, K, D); give x with {d} features"
        )
    # [W_1; ...; W_M] x^T, (M*K, N): the weights on the left, as scores.affine computes
    # (the faster orientation of this product on XLA's CPU backend).
    wide = jax.lax.dot_general(
        w.reshape(m * k, d), x, (((1,), (1,)), ((), ())), precision=scores.PRECISION
    )
    return jnp.transpose(wide.reshape(m, k, x.shape[0]), (0, 2, 1)) + b[:, None, :]


def combine(scores: Array, how: str = "proba") -> Array:
    """The ensemble's (N, K) class weights from members' scores (M, N, K); argmax predicts.

    ``proba``: mean of the members' softmax, ``1/M sum_m softmax(s_m)``; ``scores``: softmax of
    the mean score; ``vote``: the fraction of members voting for each class plus less than one
    vote of the mean probability, so ties go to the higher mean probability.
    """
    _check_combine(how)
    if scores.ndim != 3:
        raise ValueError(
            f"scores must be (M, N, K) = (members, examples, classes), got shape {scores.shape}"
        )
    return COMBINERS[how](scores)


def _mean_proba(scores: Array) -> Array:
    return jnp.mean(jax.nn.softmax(scores, axis=-1), axis=0)


def _vote(scores: Array) -> Array:
    m, _, k = scores.shape
    votes = jnp.mean(jax.nn.one_hot(jnp.argmax(scores, axis=-1), k), axis=0)
    return votes + _mean_proba(scores) * (0.5 / m)  # < one vote: only breaks ties


# How members' scores (M, N, K) combine (``ensemble.combine``): name -> function.
COMBINERS = {
    "proba": _mean_proba,
    "scores": lambda scores: jax.nn.softmax(jnp.mean(scores, axis=0), axis=-1),
    "vote": _vote,
}
COMBINES = tuple(COMBINERS)


def predict_proba(stacked_params: Params, x: Array, model: str | settings.Setup) -> Array:
    """Mean of the members' softmax probabilities, vmapped over the members: (N, K)."""
    return combine(member_scores(stacked_params, x, model), "proba")


def predict_proba_linear_wide(stacked_params: Params, x: Array) -> Array:
    """``predict_proba`` for linear members through one (N, D) x (D, M*K) product."""
    return combine(member_scores_linear_wide(stacked_params, x), "proba")


_vmap_jit = jax.jit(member_scores, static_argnums=2)
# Models whose stacked members score faster as one wide product than under vmap.
WIDE = {"linear": jax.jit(member_scores_linear_wide)}


@jax.jit
def _accuracies(scores: Array, y: Array) -> Array:
    return jnp.mean(jnp.argmax(scores, axis=-1) == y, axis=-1)


# Rows per call for vmapped (two-layer) groups: bounds the (M, rows, H) hidden activations.
_MAX_ELEMENTS = 1 << 26


def stacked_scores(
    groups: Sequence[members.Group], x: Array, chunk: int | None = None
) -> np.ndarray:
    """Every member's scores on ``x`` (M, N, K), groups concatenated, on the host.

    Linear groups take one wide product each (``member_scores_linear_wide``) over all of
    ``x``; other groups a vmap (``member_scores``) over chunks of rows small enough that
    their hidden activations stay under ~256 MB. ``chunk`` forces a chunk size. Chunks are
    of equal size (the last one zero-padded), so they share one compile. Put ``x`` on the
    device first (``jax.device_put``) when scoring it more than once.
    """
    if getattr(x, "ndim", None) != 2 or not x.shape[0]:
        raise ValueError(
            f"x must be (N, D) with N >= 1, got shape {getattr(x, 'shape', x)}; "
            "flatten images with x.reshape(len(x), -1)"
        )
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    members.check_groups(groups, num_features=x.shape[1])
    n = x.shape[0]
    out = []
    for g in groups:
        wide = g.setup.model in WIDE
        fn = WIDE.get(g.setup.model, _vmap_jit)
        args = () if wide else (g.setup.model,)
        rows = chunk or (n if wide else max(1, _MAX_ELEMENTS // (len(g.names) * _width(g.setup))))
        size = -(-n // -(-n // rows))  # ceil(n / number of chunks)
        parts = []
        for start in range(0, n, size):
            xb = x[start : start + size]
            pad = size - xb.shape[0]  # pad the last chunk so every chunk shares one compile
            if pad:  # a device-resident x stays on the device
                xb = (jnp.pad if isinstance(xb, jax.Array) else np.pad)(xb, ((0, pad), (0, 0)))
            parts.append(np.asarray(fn(g.params, xb, *args))[:, : size - pad])
        out.append(np.concatenate(parts, axis=1))
    return np.concatenate(out, axis=0)


def _width(setup: settings.Setup) -> int:
    """The widest layer a member computes per example (its sizes, or the class scores)."""
    sizes = [getattr(setup, name) for name in scores.model(setup.model).sizes]
    return max([setup.num_classes, *sizes])


# ----------------------------------------------------------------------------- evaluation


def evaluate(groups: Sequence[members.Group], dataset: data.Dataset, how: str = "proba") -> dict:
    """Each member's and the ensemble's accuracy on train/val/test, and the gains.

    The best member is the one with the highest validation accuracy; gains are the
    ensemble's accuracy minus the mean member's and minus the best member's.
    """
    members.check_groups(groups, dataset.num_features, dataset.num_classes)
    rows = [{"name": n} for g in groups for n in g.names]
    ensemble = {}
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        s = jnp.asarray(stacked_scores(groups, jax.device_put(x)))
        for row, a in zip(rows, np.asarray(_accuracies(s, y))):
            row[f"{split}_accuracy"] = float(a)
        pred = jnp.argmax(combine(s, how), axis=-1)
        ensemble[f"{split}_accuracy"] = float(jnp.mean(pred == y))
    best = rows[int(np.argmax([r["val_accuracy"] for r in rows]))]
    splits = ("val_accuracy", "test_accuracy")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in splits}
    return {
        "members": rows,
        "ensemble": ensemble,
        "combine": how,
        "size": len(rows),
        "mean_member": mean,
        "best_member": {"name": best["name"], **{k: best[k] for k in splits}},
        "gain_over_mean": {k: ensemble[k] - mean[k] for k in splits},
        "gain_over_best": {k: ensemble[k] - best[k] for k in splits},
    }


def format_table(result: dict) -> str:
    """The evaluation as a plain-text table (one row per member, then the summary rows)."""
    rows = [(m["name"], m["val_accuracy"], m["test_accuracy"]) for m in result["members"]]
    summary = (
        ("mean member", result["mean_member"]),
        (f"best member ({result['best_member']['name']})", result["best_member"]),
        (f"ensemble ({result['combine']})", result["ensemble"]),
    )
    rows += [(name, r["val_accuracy"], r["test_accuracy"]) for name, r in summary]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'member':<{width}}{'val':>8}{'test':>8}"]
    lines += [f"{n:<{width}}{v:8.4f}{t:8.4f}" for n, v, t in rows]
    for key in ("gain_over_mean", "gain_over_best"):
        g = result[key]
        lines.append(
            f"{key.replace('_', ' '):<{width}}{g['val_accuracy']:+8.4f}{g['test_accuracy']:+8.4f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- experiment


def member_inputs(
    config: ml_collections.ConfigDict, dataset: data.Dataset | None = None
) -> tuple[members.Options, data.Dataset]:
    """The plain ``members.Options`` a config names, and the data set the members take
    (``dataset`` if given, else loaded); the one reader of configs below ``run_ensemble``.

    Sources ``search`` and ``checkpoints`` take the setup, hparams and data set (with its
    ``split_seed``) of the sweep or training workdir they read (its config.json;
    ``--config.dataset.data_dir``, when set, overrides the folder); ``seeds`` and ``ema`` the
    ensemble config's own. Without a config.json (or a workdir) they are the ensemble
    config's: building the members then names what is missing.
    """
    e = config.ensemble
    settings.check_no_data_parallel(config, "its members")
    directory = {"search": e.get("search_dir"), "checkpoints": e.get("train_dir")}.get(e.source)
    path = os.path.join(directory, "config.json") if directory else ""
    run = config  # the config of the run the members come from
    if path and os.path.exists(path):
        run = ml_collections.ConfigDict(metrics.read_json(path))
        if config.dataset.get("data_dir"):  # data folders move: the ensemble's path wins
            run.dataset.data_dir = config.dataset.data_dir
    if dataset is None:
        dataset = settings.load_data(run)
    options = members.Options(
        source=e.source,
        size=e.size,
        setup=settings.setup_from_config(run, dataset.num_features, dataset.num_classes),
        hparams=settings.hparams_from_config(run),
        trained_on=run.dataset.name,
        seed=int(config.seed),
        search_dir=e.get("search_dir") or "",
        own_order=bool(e.get("own_order", False)),
        train_dir=e.get("train_dir") or "",
        search_stages=e.get("search_stages", "last"),
    )
    return options, dataset


def run_ensemble(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Builds the ensemble a config names, evaluates it and writes ``workdir``.

    Writes config.json, summary.json (``members``, ``ensemble``, top-level
    ``train/val/test_accuracy`` and ``seconds`` of the ensemble, gains; ``raw`` for source
    ``ema``) and ensemble.png, and prints the table. Everything is validated and built
    before the workdir is touched.

    In a multi-process run every process must call it (the same command on the same files):
    each builds the members (sharded fits, gathered) and evaluates them on its own host
    (the same numbers everywhere), process 0 alone writes the workdir and prints the table,
    and every process returns the summary.
    """
    how = config.ensemble.get("combine", "proba")
    _check_combine(how)
    config_dict = config.to_dict()
    _check_workdir(workdir, config_dict)
    options, dataset = member_inputs(config)
    distributed.check_same_on_all(
        "the config and the data set",
        config_dict,
        {"setup": dataclasses.asdict(options.setup), "hparams": options.hparams},
        *dataset.arrays(),
    )
    # Errors every process raises alike (the same config, data and members everywhere).
    with distributed.leaving_together():
        summary = _build_and_evaluate(options, dataset, how)
    if distributed.is_main():
        _write_outputs(workdir, config_dict, summary)
    distributed.barrier("ensemble-done")  # a failure on process 0 fails the others too
    return summary


def _build_and_evaluate(options: members.Options, dataset: data.Dataset, how: str) -> dict:
    """The members built and evaluated: the summary."""
    t0 = time.perf_counter()
    logging.info(
        "building %d members (source %s) on %s", options.size, options.source, dataset.describe()
    )
    groups, raw = members.build_members(options, dataset)
    jax.block_until_ready([g.params for g in groups])
    build_seconds = time.perf_counter() - t0
    for g in groups:  # what the members are, whatever the ensemble's own config says
        logging.info(
            "members %s: %s, %d epochs, from %s",
            ", ".join(g.names),
            g.setup.model,
            g.setup.num_epochs,
            options.search_dir or options.train_dir or f"seed {options.seed}",
        )
    logging.info("built the members in %.1fs; evaluating", build_seconds)
    distributed.check_interrupt()
    result = evaluate(groups, dataset, how)
    summary = {
        **result,
        "source": options.source,
        **{f"{s}_accuracy": result["ensemble"][f"{s}_accuracy"] for s in ("train", "val", "test")},
        "build_seconds": build_seconds,
        "seconds": time.perf_counter() - t0,
        "groups": [{"names": list(g.names), "setup": dataclasses.asdict(g.setup)} for g in groups],
    }
    if raw is not None:
        summary["raw"] = evaluate([raw], dataset, how)
    return summary


def _check_workdir(workdir: str, config_dict: dict) -> None:
    """``metrics.check_config`` as process 0 finds the workdir, its error raised on every
    process alike (an ensemble written before ``settings.DEVICE_SPLITS`` existed lacks them)."""
    error = None
    if distributed.is_main():
        try:
            metrics.check_config(workdir, config_dict, "ensemble", settings.DEVICE_SPLITS)
        except ValueError as e:
            error = str(e)
    error = distributed.broadcast_json(error)
    if error is not None:
        raise ValueError(error)


def _write_outputs(workdir: str, config_dict: dict, summary: dict) -> None:
    """config.json, summary.json, ensemble.png; the table printed and one line logged."""
    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), config_dict)
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    plots.ensemble_members(summary, os.path.join(workdir, "ensemble.png"))
    table = format_table(summary)
    if "raw" in summary:
        table += "\n\nraw weights (no running average):\n" + format_table(summary["raw"])
    print(table)
    logging.info(
        "ensemble of %d (%s, %s): val %.4f  test %.4f  (%.1fs)",
        summary["size"],
        summary["source"],
        summary["combine"],
        summary["val_accuracy"],
        summary["test_accuracy"],
        summary["seconds"],
    )
