"""Training as an experiment: ``train_and_evaluate(config, workdir)`` trains the model a
config describes, with checkpoints, metrics, a summary and figures in ``workdir``.

The trainer itself (a run's state, one jitted epoch, a pure ``fit`` to vmap over
hyperparameters and seeds) is ``lib.epoch``, and the model's functions are ``lib.model``;
their names are re-exported here, as ``train.fit``, ``train.init_state``, ... A run is a
static `settings.Setup` (model, loss, optimizer, sizes) and an ``hparams`` dict of scalars
(learning rate, reg, ...; `settings.HPARAMS`) that may be traced, so one compiled program
serves every value.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lib import checkpoints, data, distributed, interrupt, metrics, plots, scores, settings
from lib.epoch import (  # noqa: F401  (re-exported: the trainer's API)
    ROW_BLOCKS,
    Data,
    TrainState,
    epoch_batches,
    finite,
    fit,
    from_checkpoint,
    init_state,
    make_rule,
    make_schedule,
    permutation,
    run_epoch,
    steps_per_epoch,
    to_checkpoint,
    to_device,
    train_epoch,
)
from lib.model import (  # noqa: F401  (re-exported: the model's functions)
    accuracy,
    evaluate,
    init_params,
    objective,
    predict,
)
from lib.settings import Setup, num_params

# Config fields a rerun may change in a workdir that holds checkpoints.
RESUMABLE_CHANGES = (
    "train.num_epochs",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    *settings.DEVICE_SPLITS,
)
# The mesh axis a data-parallel run splits each minibatch over (``train.data_parallel``).
BATCH_AXIS = "batch"
# A state's own buffers (the epoch donates its input state), made inside jit: its arrays may
# span several processes.
_own_buffers = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
SPLITS = ("train", "val", "test")
# How a model's input weights are drawn (``scores.Model.figure``): figure -> plot function.
WEIGHT_FIGURES = {"templates": plots.class_templates, "first_layer": plots.first_layer}


class Run(NamedTuple):
    """What a config asks for, read and checked before the workdir is touched."""

    dataset: data.Dataset
    setup: Setup
    hparams: dict[str, float]
    seed: int
    checkpoint_every: int
    keep_checkpoints: int | None
    data_parallel: bool  # each minibatch split over every device of every process
    shard_data: bool  # data_parallel: the training rows split over the devices too
    config: dict  # the resolved config, as config.json holds it


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the model a config describes into ``workdir`` and evaluates it.

    Writes config.json, metrics.jsonl (one record per epoch), checkpoints/ (every
    ``train.checkpoint_every`` epochs, the last epoch, and the epoch a signal stopped the
    run at; the latest ``train.keep_checkpoints`` are kept), summary.json and PNG figures.
    Running it again with the same workdir resumes from the last checkpoint (recomputing,
    identically, the epochs after it); after the last epoch it only re-evaluates.
    Everything is validated before the workdir is touched.

    With ``train.data_parallel``, each minibatch is split over every device of every process
    (`BATCH_AXIS`): launched as several processes (``lib.distributed``), each runs this same
    call, process 0 alone writes the files besides the checkpoints, which all write together
    (orbax), and a rerun may resume them with another number of processes or devices.

    Returns:
      the summary dict written to summary.json.
    """
    start_time = time.perf_counter()
    run = read_config(config)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    done = checkpoints.steps(ckpt_dir)
    distributed.check_same_on_all(  # (the checkpoints: every process must see the same folder)
        "the config, the data set and the saved checkpoints",
        run.config,
        done,
        *run.dataset.arrays(),
    )
    with distributed.leaving_together():  # the same config, data and metrics everywhere
        check_data_parallel(run)
        state, history, summary = _train_and_evaluate(run, workdir, done)
    if distributed.is_main():
        _figures(state, run, history, workdir)
    # The whole call: data, compilation, training, checkpoints, evaluation, figures.
    summary["wall_seconds"] = time.perf_counter() - start_time
    if distributed.is_main():
        metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    _log_summary(summary)
    return summary


def _train_and_evaluate(run: Run, workdir: str, done: list[int]):
    """Everything after the checks: trains (or resumes from the last of the ``done``
    epochs) and evaluates; (the final state, on the host; the history; the summary)."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if done:  # a workdir that holds no epoch yet may take a new config
        _check_resumable(run, workdir, done[-1])
    main = distributed.is_main()
    if main:
        os.makedirs(workdir, exist_ok=True)
        metrics.write_json(os.path.join(workdir, "config.json"), run.config)
    logging.info("data %s", run.dataset.describe())

    mesh = distributed.global_mesh(BATCH_AXIS) if run.data_parallel else None
    device_data = to_device(run.dataset, mesh, BATCH_AXIS if run.shard_data else None)
    hp = settings.float32_hparams(run.hparams)
    if mesh is not None:
        hp = {k: distributed.global_array(v, mesh, PartitionSpec()) for k, v in hp.items()}
    start = done[-1] if done else 0
    state, history = _start(run, hp, ckpt_dir, start, workdir, mesh)
    state = _train(run, hp, device_data, state, history, start, ckpt_dir, workdir, mesh)
    if jax.process_count() > 1:  # every process's host: what follows runs on its own
        params, ema = distributed.gather((state.params, state.ema))
        state = state._replace(params=params, ema=ema)
    summary = _summarize(state, run.dataset, run.setup, history)
    summary["devices"] = 1 if mesh is None else mesh.size
    if run.dataset.label_values is not None:  # class k stood for label_values[k] in the files
        summary["label_values"] = list(run.dataset.label_values)
    return state, history, summary


def read_config(config: ml_collections.ConfigDict) -> Run:
    """The run a training config describes: its data loaded, everything checked but the
    devices (`check_data_parallel`)."""
    dataset = settings.load_data(config)
    setup = settings.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = settings.hparams_from_config(config)
    settings.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    every, keep = checkpoint_policy(config)
    # (checked against the devices by `check_data_parallel`)
    data_parallel = bool(config.train.get("data_parallel", False))
    shard_data = bool(config.train.get("shard_data", False))
    return Run(
        dataset,
        setup,
        hparams,
        int(config.seed),
        every,
        keep,
        data_parallel,
        shard_data,
        config.to_dict(),
    )


def check_data_parallel(run: Run) -> None:
    """A data-parallel run splits each minibatch (and with ``shard_data`` the training rows)
    evenly over every device; a multi-process run must be one."""
    setup, devices, processes = run.setup, jax.device_count(), jax.process_count()
    if run.shard_data and not run.data_parallel:
        raise ValueError(
            "train.shard_data splits the training rows of a data-parallel run: set "
            "--config.train.data_parallel=True too, or --config.train.shard_data=False"
        )
    if not run.data_parallel:
        if processes > 1:
            raise ValueError(
                f"a training run launched as {processes} processes splits each minibatch "
                "over every process's devices: set --config.train.data_parallel=True "
                "(or launch it as one process)"
            )
        return
    if settings.is_full_batch(setup):
        raise ValueError(
            f"train.data_parallel splits minibatches, but optimizer {setup.optimizer!r} takes "
            "full-batch steps: set --config.train.data_parallel=False and launch one process"
        )
    if setup.batch_size % devices:
        raise ValueError(
            f"train.data_parallel splits each minibatch of train.batch_size={setup.batch_size} "
            f"evenly over the {devices} devices: set --config.train.batch_size to a multiple "
            f"of {devices}"
        )
    num_train = run.dataset.x_train.shape[0]
    if run.shard_data and num_train % devices:
        raise ValueError(
            f"train.shard_data splits the {num_train} training rows evenly over the {devices} "
            f"devices: set --config.dataset.num_train to a multiple of {devices}"
        )


def _check_resumable(run: Run, workdir: str, last: int) -> None:
    """A workdir with checkpoints resumes only the same run, and not a shorter one."""
    metrics.check_config(workdir, run.config, "run", resumable=RESUMABLE_CHANGES)
    if last > run.setup.num_epochs:
        raise ValueError(
            f"workdir {workdir!r} holds a run trained for {last} epochs, more than "
            f"train.num_epochs={run.setup.num_epochs}; rerun with "
            f"--config.train.num_epochs={last} (or more) to report or extend it, or "
            "train the shorter run in a new --workdir"
        )


def _start(run: Run, hp, ckpt_dir: str, start: int, workdir: str, mesh: Mesh | None):
    """The state to train from (fresh, or the checkpoint of epoch ``start``; on every device
    of ``mesh`` if given) and the metrics history up to it (metrics.jsonl cut back to it by
    process 0: later records are recomputed, identically)."""
    # One compiled program (eagerly, each of its small ops would compile on its own).
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    state = jax.jit(init_state, static_argnums=(2, 3), out_shardings=replicated)(
        jax.random.key(run.seed), hp, run.setup, run.dataset.x_train.shape[0]
    )
    if start:
        like = to_checkpoint(state)
        state = from_checkpoint(checkpoints.restore(ckpt_dir, start, like=like))
        logging.info("resuming %s from the checkpoint of epoch %d", workdir, start)
    history = None
    if distributed.is_main():
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        history = [r for r in metrics.read_jsonl(metrics_path) if r["epoch"] <= start]
        metrics.write_jsonl(metrics_path, history)
    # The epoch donates its input state: give it buffers of its own (optax's L-BFGS state,
    # or EMA initialised to the params, would otherwise alias one buffer twice).
    return _own_buffers(state), distributed.broadcast_json(history)


def _compile_epoch(run: Run, state, hp, device_data, mesh: Mesh | None):
    """The epoch, compiled ahead (so the epochs' seconds exclude the compilation); with a
    ``mesh``, each minibatch split over it and the state and metrics replicated."""
    distributed.check_interrupt()
    t0 = time.perf_counter()
    epoch = functools.partial(run_epoch, setup=run.setup)
    replicated = None
    if mesh is not None:  # one row block: the split rows are each device's block
        split = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        epoch = functools.partial(epoch, row_blocks=1, batch_sharding=split)
        replicated = NamedSharding(mesh, PartitionSpec())
        logging.info("data parallel: each minibatch split over %d devices", mesh.size)
    jitted = jax.jit(epoch, donate_argnums=0, out_shardings=replicated)
    epoch_fn = jitted.lower(state, hp, device_data).compile()
    logging.info("compiled the epoch in %.2fs", time.perf_counter() - t0)
    distributed.check_interrupt()
    return epoch_fn


def _train(
    run: Run,
    hp,
    device_data,
    state,
    history: list[dict],
    start: int,
    ckpt_dir: str,
    workdir: str,
    mesh: Mesh | None = None,
):
    """Trains the epochs after ``start`` (the epoch ``state`` comes from), appending each
    one's record to ``history`` and (process 0) metrics.jsonl; checkpoints by the policy,
    and at a signal to any process (then re-raised by every process)."""
    setup = run.setup
    if start < setup.num_epochs:
        epoch_fn = _compile_epoch(run, state, hp, device_data, mesh)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    with checkpoints.manager(ckpt_dir, keep=run.keep_checkpoints) as ckpt:
        for epoch in range(start + 1, setup.num_epochs + 1):
            t0 = time.perf_counter()
            state, m = epoch_fn(state, hp, device_data)
            m = {k: float(v) for k, v in distributed.gather(m).items()}
            record = {"epoch": epoch, **m, "seconds": time.perf_counter() - t0}
            if not finite(m):  # checked before any save: a NaN/inf epoch is never kept
                saved = ckpt.all_steps()
                raise FloatingPointError(_divergence(epoch, m, setup, run.hparams, saved))
            if distributed.is_main():
                metrics.append_jsonl(metrics_path, record)
            metrics.log_progress(record, setup.num_epochs)
            history.append(record)
            if epoch % run.checkpoint_every == 0 or epoch == setup.num_epochs:
                checkpoints.save(ckpt, epoch, to_checkpoint(state))
            try:
                distributed.check_interrupt()  # a safe point: the epoch is complete
            except interrupt.Interrupted:
                checkpoints.save(ckpt, epoch, to_checkpoint(state))  # (once: a saved step is kept)
                raise
    return state


def _figures(state: TrainState, run: Run, history: list[dict], workdir: str) -> None:
    """curves.png, and for image data the model's input weights drawn as images (the notes'
    class templates of a linear model, the first layer's rows of a two-layer net)."""
    plots.training_curves(history, os.path.join(workdir, "curves.png"))
    weight_figure(state.params, run.setup, run.dataset, workdir)


def weight_figure(params, setup: Setup, dataset: data.Dataset, workdir: str) -> None:
    """For image data, the model's input weights drawn as images in ``workdir``
    (``scores.Model.figure``: templates.png, first_layer.png); nothing otherwise."""
    figure = scores.model(setup.model).figure
    if dataset.is_image and figure is not None:
        leaf, kind = figure
        weights = np.asarray(params[leaf])
        WEIGHT_FIGURES[kind](weights, dataset, os.path.join(workdir, f"{kind}.png"))


def _log_summary(summary: dict[str, Any]) -> None:
    logging.info(
        "train acc %.4f  val acc %.4f  test acc %.4f  (%d epoch%s: %.2fs training, %.2fs in all)",
        summary["train_accuracy"],
        summary["val_accuracy"],
        summary["test_accuracy"],
        summary["epochs"],
        "" if summary["epochs"] == 1 else "s",
        summary["seconds"],
        summary["wall_seconds"],
    )


def checkpoint_policy(config: ml_collections.ConfigDict) -> tuple[int, int | None]:
    """(epochs between checkpoints, how many to keep or None for all) from a config's
    ``train.checkpoint_every`` and ``train.keep_checkpoints`` (0: all), checked."""
    every = int(config.train.get("checkpoint_every", 1))
    keep = int(config.train.get("keep_checkpoints", 0))
    if every < 1 or keep < 0:
        raise ValueError(
            f"train.checkpoint_every={every} must be >= 1 and train.keep_checkpoints={keep} "
            ">= 0 (0 keeps all); set --config.train.checkpoint_every and "
            "--config.train.keep_checkpoints"
        )
    return every, keep or None


def _divergence(epoch: int, m: dict, setup: Setup, hparams: dict, saved: Sequence[int]) -> str:
    return (
        f"training diverged at epoch {epoch}: train loss {m['train_loss']}, val loss "
        f"{m['val_loss']}, update/weight {m['update_ratio']} with "
        f"{_describe_run(setup, hparams)}; lower --config.optimizer.learning_rate"
        + (
            f" and use a new --workdir (this one keeps checkpoints up to epoch {max(saved)})"
            if saved
            else " (nothing was checkpointed: the same --workdir can be reused)"
        )
    )


def _describe_run(setup: Setup, hparams: dict) -> str:
    used = {k: hparams[k] for k in ("learning_rate", "reg")}
    return f"model={setup.model}, loss={setup.loss}, optimizer={setup.optimizer}, " + ", ".join(
        f"{k}={v:g}" for k, v in used.items()
    )


def _summarize(
    state: TrainState, dataset: data.Dataset, setup: Setup, history: list[dict]
) -> dict[str, Any]:
    """Accuracies of the final params (and of the EMA), final loss, epoch seconds."""
    splits = {n: (getattr(dataset, f"x_{n}"), getattr(dataset, f"y_{n}")) for n in SPLITS}

    @jax.jit  # every split (and the EMA's) in one program: one compilation
    def accuracies(params, ema, splits):
        out = {f"{n}_accuracy": accuracy(params, *splits[n], setup) for n in SPLITS}
        if setup.ema:
            out["ema"] = {f"{n}_accuracy": accuracy(ema, *splits[n], setup) for n in SPLITS[1:]}
        return out

    found = jax.tree.map(float, jax.device_get(accuracies(state.params, state.ema, splits)))
    return {
        **found,
        "final_loss": history[-1]["train_loss"] if history else float("nan"),
        "seconds": float(sum(r["seconds"] for r in history)),  # training, compile excluded
        "epochs": len(history),
        "num_params": num_params(setup),
    }
