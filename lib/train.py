"""Training: a jitted epoch, a pure ``fit`` to vmap over hyperparameters and seeds, and
``train_and_evaluate(config, workdir)`` for the experiments.

A run is a static `settings.Setup` (the structure: model, loss, optimizer, sizes) and an
``hparams`` dict of scalars (learning rate, reg, ...; `settings.HPARAMS`) that may be traced,
so one compiled program serves every value and ``jax.vmap`` over a batch of hparams (or of
keys) trains many models at once on shared data.

One epoch is one ``lax.scan`` over minibatches drawn on the device from a per-epoch
permutation (``fold_in(key, epoch)``); the host reads the metrics once per epoch.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lib import checkpoints, data, interrupt, losses, metrics, plots, scores, settings, updates
from lib.settings import DEFAULT_HPARAMS, FULL_BATCH, Setup, num_params, validate
from lib.types import Array, Params, PRNGKey

# A single run's minibatch of pixels is scored in this many row blocks (`objective`).
# Measured with ``python -m experiments.bench --workload=train`` on the 2-core CPU of the
# README: a CIFAR-sized epoch took about 15% less time with 2 blocks than with 1, and longer
# with 4. XLA then gathers the minibatch as bytes once and makes each block float32 on its
# own, instead of one slower fused gather-and-convert, and runs the blocks' skinny
# (rows, D) x (D, K) products side by side. Float32 rows, the two-layer net and vmapped
# batches of runs (`fit`) gained nothing or lost (a batch whose runs each draw their own
# minibatches: 11% slower), so they keep one block.
ROW_BLOCKS = 2


class Data(NamedTuple):
    """Training and validation arrays, on the device and shared by every vmapped run.

    ``x_train`` is float32 rows (N, D) or `data.Pixels` (uint8 pixels that mean those
    rows); read it with ``data.rows``.
    """

    x_train: Array | data.Pixels
    y_train: Array
    x_val: Array
    y_val: Array


class TrainState(NamedTuple):
    """Everything a run carries from one epoch to the next (and checkpoints).

    Attributes:
      params: the model parameters.
      opt_state: the update rule's state.
      ema: the debiased running average of the params (``()`` without EMA).
      ema_state: optax.ema's state (``()`` without EMA).
      key: the run's training key; epoch e draws from ``fold_in(key, e)``.
      epoch: epochs completed (int32).
    """

    params: Params
    opt_state: Any
    ema: Any
    ema_state: Any
    key: PRNGKey
    epoch: Array


def init_params(key: PRNGKey, setup: Setup) -> Params:
    if setup.model == "linear":
        return scores.init_linear(key, setup.num_features, setup.num_classes)
    return scores.init_two_layer(key, setup.num_features, setup.hidden, setup.num_classes)


def predict(params: Params, x: Array, setup: Setup) -> Array:
    """Class scores (N, K) without dropout."""
    if setup.model == "linear":
        return scores.linear(params, x)
    return scores.two_layer(params, x)


def objective(
    params: Params,
    x: Array,
    y: Array,
    hparams,
    setup: Setup,
    key: PRNGKey | None = None,
    row_blocks: int = 1,
) -> Array:
    """Mean data loss + reg * sum(W**2); dropout when ``key`` is given (two_layer).

    ``row_blocks`` > 1 computes the linear model's scores in that many equal row blocks (if
    the rows divide evenly): the same scores row by row, a speed choice (`ROW_BLOCKS`). The
    gradient of W is then summed block by block, so its last bits may differ.
    """
    if setup.model == "linear":
        n = x.shape[0]
        parts = jnp.split(x, row_blocks) if row_blocks > 1 and n % row_blocks == 0 else [x]
        s = jnp.concatenate([scores.linear(params, part) for part in parts])
    else:
        s = scores.two_layer(params, x, key=key, dropout=hparams["dropout"])
    return _data_loss(s, y, setup) + losses.l2_penalty(params, hparams["reg"])


def _data_loss(s: Array, y: Array, setup: Setup) -> Array:
    """The mean data loss ``setup.loss`` names (softmax or hinge) of scores ``s``."""
    if setup.loss == "softmax":
        return losses.softmax_cross_entropy(s, y)
    return losses.multiclass_hinge(s, y, margin=setup.margin)


def steps_per_epoch(setup: Setup, num_train: int) -> int:
    return 1 if setup.optimizer in FULL_BATCH else num_train // setup.batch_size


def permutation(key: PRNGKey, n: int) -> Array:
    """A random permutation of ``arange(n)`` (int32), by rounds of random sort keys.

    Each round sorts ``(random bits << b) | index`` as one uint32 (b = bits of n - 1) and
    keeps the low b bits: a shuffle by random sort keys, as ``jax.random.permutation`` does,
    but with a one-operand sort, about 4x faster on a CPU than jax's key-value sort (the
    shuffle was ~15% of a CIFAR-sized epoch). Equal keys keep their order within a round, so,
    like jax, it repeats the round ``ceil(3 ln n / ln 2^(32 - b))`` times (jax's rule, with
    32 - b key bits instead of 32). Not the same permutation as ``jax.random.permutation``.
    """
    b = max(1, (n - 1).bit_length())
    if b > 24:  # fewer than 8 random bits per round: use jax's key-value shuffle
        return jax.random.permutation(key, n).astype(jnp.int32)
    rounds = max(1, math.ceil(3 * math.log(max(n, 2)) / ((32 - b) * math.log(2))))
    mask = jnp.uint32((1 << b) - 1)
    x = jnp.arange(n, dtype=jnp.uint32)
    for round_key in jax.random.split(key, rounds):
        bits = jax.random.bits(round_key, (n,), jnp.uint32)
        x = jnp.sort((bits << b) | x) & mask
    return x.astype(jnp.int32)


def epoch_batches(key: PRNGKey, epoch: Array, n: int, setup: Setup) -> Array:
    """The minibatch indices (steps, batch_size) of ``epoch``: a permutation drawn from
    ``split(fold_in(key, epoch))[0]``, cut into steps (the last partial batch dropped)."""
    perm_key, _ = jax.random.split(jax.random.fold_in(key, epoch))
    steps = steps_per_epoch(setup, n)
    return permutation(perm_key, n)[: steps * setup.batch_size].reshape(steps, setup.batch_size)


def make_schedule(setup: Setup, hparams, steps: int) -> Callable[[Array], Array]:
    """The learning rate as a function of the update count (0 for the first update)."""
    lr = hparams["learning_rate"]
    if setup.schedule == "constant":
        return updates.constant(lr)
    if setup.schedule == "step":
        return updates.step_decay(lr, hparams["lr_decay"], setup.schedule_every * steps)
    if setup.schedule == "exponential":
        return updates.exponential_decay(lr, hparams["lr_k"] / steps)
    return updates.inverse_time_decay(lr, hparams["lr_k"] / steps)


def make_rule(setup: Setup, hparams, schedule, full_loss: Callable[[Params], Array]):
    """The update rule named by ``setup.optimizer``, closed over (possibly traced) hparams:
    ``updates.RULES[name](schedule, **the others it reads)`` (``settings.OPTIMIZER_HPARAMS``),
    or Newton's over the Hessian of ``full_loss``."""
    name = setup.optimizer
    if name == "newton":
        return updates.newton(updates.flat_hessian(full_loss), damping=hparams["damping"])
    if name not in updates.RULES:
        raise ValueError(f"no minibatch update rule for optimizer {name!r}")
    reads = settings.OPTIMIZER_HPARAMS[name]
    return updates.RULES[name](schedule, **{k: hparams[k] for k in reads if k != "learning_rate"})


def init_state(key: PRNGKey, hparams, setup: Setup, num_train: int) -> TrainState:
    """A fresh TrainState: params from one half of ``key``, the training key from the other."""
    init_key, train_key = jax.random.split(key)
    params = init_params(init_key, setup)
    if setup.optimizer == "lbfgs":
        opt_state = optax.lbfgs().init(params)
    else:
        schedule = make_schedule(setup, hparams, steps_per_epoch(setup, num_train))
        opt_state = make_rule(setup, hparams, schedule, lambda p: 0.0).init(params)
    ema, ema_state = (), ()
    if setup.ema:
        ema, ema_state = params, optax.ema(hparams["ema_decay"], debias=True).init(params)
    return TrainState(params, opt_state, ema, ema_state, train_key, jnp.zeros((), jnp.int32))


def _global_norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def accuracy(params: Params, x: Array, y: Array, setup: Setup) -> Array:
    """Fraction of ``x`` whose highest score is the label ``y``."""
    return losses.accuracy(predict(params, x, setup), y)


def evaluate(params: Params, x: Array, y: Array, setup: Setup) -> dict[str, Array]:
    """Mean data loss (no regulariser, no dropout) and accuracy of ``params`` on (x, y)."""
    s = predict(params, x, setup)
    return {"loss": _data_loss(s, y, setup), "accuracy": losses.accuracy(s, y)}


def train_epoch(
    state: TrainState,
    hparams,
    x: Array | data.Pixels,
    y: Array,
    setup: Setup,
    order_key: PRNGKey | None = None,
    epoch: Array | None = None,
    row_blocks: int = ROW_BLOCKS,
):
    """One pass over (x, y): returns the new state, mean minibatch loss and update ratio.

    Args:
      state, hparams, x, y, setup: the run and its data (x: float32 rows or `data.Pixels`,
        turned into float32 rows after each minibatch gather).
      order_key: the key of the minibatch order (default: the run's own ``state.key``).
        Trials of a sweep share one, so under ``vmap`` each minibatch is gathered once
        for all of them and their products become one wide matrix product.
      epoch: ``state.epoch`` (the default), passed unbatched by ``fit`` for the same reason.
      row_blocks: the row blocks of a minibatch of pixels (`ROW_BLOCKS`; 1 for none).
    """
    n = x.shape[0]
    x_stored = x  # the minibatch path gathers from the stored form (maybe Pixels)
    x = data.rows(x) if setup.optimizer in FULL_BATCH else None
    epoch = state.epoch if epoch is None else epoch
    order_key = state.key if order_key is None else order_key
    steps = steps_per_epoch(setup, n)
    schedule = make_schedule(setup, hparams, steps)
    full_loss = lambda p: objective(p, x, y, hparams, setup)
    epoch_key = jax.random.fold_in(state.key, epoch)
    dropout_key = jax.random.split(epoch_key)[1]  # [0] draws the minibatches (epoch_batches)

    if setup.optimizer == "lbfgs":
        tx = optax.lbfgs()

        def apply(params, opt_state, batch, key):
            del batch, key
            value, grad = optax.value_and_grad_from_state(full_loss)(params, state=opt_state)
            upd, opt_state = tx.update(
                grad, opt_state, params, value=value, grad=grad, value_fn=full_loss
            )
            return value, optax.apply_updates(params, upd), opt_state

        batches = jnp.zeros((1, 0), jnp.int32)
    else:
        rule = make_rule(setup, hparams, schedule, full_loss)

        def apply(params, opt_state, batch, key):
            if setup.optimizer in FULL_BATCH:
                xb, yb, blocks = x, y, 1
            else:  # in bounds by construction: no clamping or fill in the gathers
                xb, yb = data.rows(x_stored, batch), data.rows(y, batch)
                blocks = row_blocks if isinstance(x_stored, data.Pixels) else 1
            value, grads = jax.value_and_grad(objective)(
                params, xb, yb, hparams, setup, key, blocks
            )
            params, opt_state = rule.apply(params, opt_state, grads)
            return value, params, opt_state

        if setup.optimizer in FULL_BATCH:
            batches = jnp.zeros((1, 0), jnp.int32)
        else:
            batches = epoch_batches(order_key, epoch, n, setup)

    ema_tx = optax.ema(hparams["ema_decay"], debias=True) if setup.ema else None

    def step(carry, inputs):
        params, opt_state, ema, ema_state = carry
        i, batch = inputs
        use_dropout = setup.model == "two_layer" and setup.optimizer not in FULL_BATCH
        dkey = jax.random.fold_in(dropout_key, i) if use_dropout else None
        value, new_params, opt_state = apply(params, opt_state, batch, dkey)
        ratio = _global_norm(jax.tree.map(jnp.subtract, new_params, params)) / jnp.maximum(
            _global_norm(params), 1e-30
        )
        if setup.ema:
            ema, ema_state = ema_tx.update(new_params, ema_state)
        return (new_params, opt_state, ema, ema_state), (value, ratio)

    carry = (state.params, state.opt_state, state.ema, state.ema_state)
    (params, opt_state, ema, ema_state), (values, ratios) = jax.lax.scan(
        step, carry, (jnp.arange(batches.shape[0]), batches)
    )
    if setup.optimizer in FULL_BATCH:
        lr = jnp.float32(jnp.nan)  # lbfgs searches its step, newton's is the full step
    else:
        lr = schedule((epoch + 1) * steps - 1)  # the rate of the epoch's last update
    new_state = TrainState(params, opt_state, ema, ema_state, state.key, state.epoch + 1)
    return new_state, {
        "train_loss": jnp.mean(values),
        "update_ratio": jnp.mean(ratios),
        "learning_rate": lr,
    }


def run_epoch(
    state: TrainState,
    hparams,
    dataset: Data,
    setup: Setup,
    order_key: PRNGKey | None = None,
    epoch: Array | None = None,
    row_blocks: int = ROW_BLOCKS,
):
    """``train_epoch`` then the per-epoch accuracies; returns (state, metrics)."""
    state, m = train_epoch(
        state, hparams, dataset.x_train, dataset.y_train, setup, order_key, epoch, row_blocks
    )
    # Every stride-th example, so a training set sorted by class is still sampled evenly.
    n = dataset.x_train.shape[0]
    stride, k = max(1, n // setup.train_eval_size), min(setup.train_eval_size, n)
    every = slice(None, stride * k, stride)
    m["train_accuracy"] = accuracy(
        state.params, data.rows(dataset.x_train, every), dataset.y_train[every], setup
    )
    val = evaluate(state.params, dataset.x_val, dataset.y_val, setup)
    m["val_loss"], m["val_accuracy"] = val["loss"], val["accuracy"]
    return state, m


def finite(metrics: dict[str, Any]) -> np.ndarray:
    """Whether an epoch ended healthy: its training loss, the end-of-epoch validation loss
    and its update/weight ratio (NaN once a weight is) are all finite. Element-wise: one
    epoch's scalars give a 0-d bool, a history of shape (..., epochs) one bool per epoch."""
    ok = [np.isfinite(np.asarray(metrics[k])) for k in ("train_loss", "val_loss", "update_ratio")]
    return np.logical_and.reduce(ok)


def fit(
    key: PRNGKey,
    hparams: dict[str, Any],
    dataset: Data,
    setup: Setup,
    order_key: PRNGKey | None = None,
):
    """Trains one model from ``key`` for ``setup.num_epochs`` epochs: a pure function.

    ``jax.vmap(fit, in_axes=(0, 0, None, None))`` trains a batch of models (one per key and
    hparams row) on the same, unbatched data. Given an unbatched ``order_key``
    (``in_axes=(0, 0, None, None, None)``), the models share their minibatch order (common
    random numbers, as a sweep wants): each minibatch is gathered once for the whole batch
    and the batch's products are one wide matrix product, several times faster on a CPU.

    Args:
      key: initialisation, dropout and (without ``order_key``) minibatch order.
      hparams: scalars named in ``HPARAMS`` (the rest default).
      dataset: training and validation arrays.
      setup: the static structure.
      order_key: the key of the minibatch order; default: derived from ``key``.

    Returns:
      (final TrainState, history): history maps each metric of ``run_epoch`` to an array
      of shape (num_epochs,).
    """
    hparams = {**DEFAULT_HPARAMS, **hparams}
    state = init_state(key, hparams, setup, dataset.x_train.shape[0])
    # The epoch index comes from the scan, not the (batched) state, so the minibatch
    # indices stay unbatched under vmap when order_key is shared. One row block: fit is
    # how batches of runs are trained, where row blocks gain nothing (see ROW_BLOCKS).
    return jax.lax.scan(
        lambda s, e: run_epoch(s, hparams, dataset, setup, order_key, e, row_blocks=1),
        state,
        jnp.arange(setup.num_epochs, dtype=jnp.int32),
    )


def to_device(ds: data.Dataset) -> Data:
    """The training and validation splits on the device; pixels stay uint8 (`data.Pixels`)."""
    x_train = ds.x_train
    if ds.train_pixels is not None:
        x_train = data.Pixels(ds.train_pixels, ds.mean, np.float32(ds.scale))
    return jax.device_put(Data(x_train, ds.y_train, ds.x_val, ds.y_val))


# ----------------------------------------------------------------------------- experiment


def to_checkpoint(state: TrainState) -> dict:
    """The pytree a training checkpoint holds (the key as raw key data)."""
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "ema": state.ema,
        "ema_state": state.ema_state,
        "key": jax.random.key_data(state.key),
        "epoch": state.epoch,
    }


def from_checkpoint(tree: dict) -> TrainState:
    """Inverse of ``to_checkpoint``."""
    return TrainState(
        tree["params"],
        tree["opt_state"],
        tree["ema"],
        tree["ema_state"],
        jax.random.wrap_key_data(tree["key"]),
        tree["epoch"],
    )


# Config fields a rerun may change in a workdir that holds checkpoints.
RESUMABLE_CHANGES = ("train.num_epochs", "train.checkpoint_every", "train.keep_checkpoints")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the model a config describes into ``workdir`` and evaluates it.

    Writes config.json, metrics.jsonl (one record per epoch), checkpoints/ (every
    ``train.checkpoint_every`` epochs, the last epoch, and the epoch a signal stopped the
    run at; the latest ``train.keep_checkpoints`` are kept), summary.json and PNG figures.
    Running it again with the same workdir resumes from the last checkpoint (recomputing,
    identically, the epochs after it); after the last epoch it only re-evaluates.
    Everything is validated before the workdir is touched.

    Returns:
      the summary dict written to summary.json.
    """
    start_time = time.perf_counter()
    dataset = settings.load_data(config)
    setup = settings.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = settings.hparams_from_config(config)
    validate(setup, hparams, num_train=dataset.x_train.shape[0])
    config_dict = config.to_dict()
    ckpt_dir = os.path.join(workdir, "checkpoints")
    every, keep = checkpoint_policy(config)  # checked before anything is written
    done = checkpoints.steps(ckpt_dir)
    if done:  # a workdir that holds no epoch yet may take a new config
        metrics.check_config(workdir, config_dict, "run", resumable=RESUMABLE_CHANGES)
        if done[-1] > setup.num_epochs:
            raise ValueError(
                f"workdir {workdir!r} holds a run trained for {done[-1]} epochs, more than "
                f"train.num_epochs={setup.num_epochs}; rerun with "
                f"--config.train.num_epochs={done[-1]} (or more) to report or extend it, or "
                "train the shorter run in a new --workdir"
            )

    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), config_dict)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    logging.info("data %s", dataset.describe())

    device_data = to_device(dataset)
    hp = settings.float32_hparams(hparams)
    # One compiled program (eagerly, each of its small ops would compile on its own).
    state = jax.jit(init_state, static_argnums=(2, 3))(
        jax.random.key(int(config.seed)), hp, setup, dataset.x_train.shape[0]
    )
    start = 0
    if done:
        start = done[-1]
        state = from_checkpoint(checkpoints.restore(ckpt_dir, start, like=to_checkpoint(state)))
        logging.info("resuming %s from the checkpoint of epoch %d", workdir, start)
    # Records past the last checkpoint are recomputed (identically) below.
    history = [r for r in metrics.read_jsonl(metrics_path) if r["epoch"] <= start]
    metrics.write_jsonl(metrics_path, history)

    # The epoch donates its input state: give it buffers of its own (optax's L-BFGS state,
    # or EMA initialised to the params, would otherwise alias one buffer twice).
    state = jax.tree.map(jnp.copy, state)
    if start < setup.num_epochs:  # compiled ahead, so epoch seconds exclude the compile
        interrupt.check()
        t0 = time.perf_counter()
        epoch_fn = (
            jax.jit(functools.partial(run_epoch, setup=setup), donate_argnums=0)
            .lower(state, hp, device_data)
            .compile()
        )
        logging.info("compiled the epoch in %.2fs", time.perf_counter() - t0)
        interrupt.check()
    with checkpoints.manager(ckpt_dir, keep=keep) as ckpt:
        for epoch in range(start + 1, setup.num_epochs + 1):
            t0 = time.perf_counter()
            state, m = epoch_fn(state, hp, device_data)
            m = {k: float(v) for k, v in jax.device_get(m).items()}
            record = {"epoch": epoch, **m, "seconds": time.perf_counter() - t0}
            if not finite(m):  # checked before any save: a NaN/inf epoch is never kept
                raise FloatingPointError(_divergence(epoch, m, setup, hparams, ckpt.all_steps()))
            metrics.append_jsonl(metrics_path, record)
            metrics.log_progress(record, setup.num_epochs)
            history.append(record)
            if epoch % every == 0 or epoch == setup.num_epochs:
                checkpoints.save(ckpt, epoch, to_checkpoint(state))
            try:
                interrupt.check()  # a safe point: the epoch is complete
            except interrupt.Interrupted:
                checkpoints.save(ckpt, epoch, to_checkpoint(state))  # (once: a saved step is kept)
                raise

    summary = _summarize(state, dataset, setup, history)
    plots.training_curves(history, os.path.join(workdir, "curves.png"))
    if dataset.is_image:  # weights as images: the notes' class templates, or W1's rows
        if setup.model == "linear":
            plots.class_templates(
                np.asarray(state.params["W"]), dataset, os.path.join(workdir, "templates.png")
            )
        else:
            plots.first_layer(
                np.asarray(state.params["W1"]), dataset, os.path.join(workdir, "first_layer.png")
            )
    # The whole call: data, compilation, training, checkpoints, evaluation, figures.
    summary["wall_seconds"] = time.perf_counter() - start_time
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
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
    return summary


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


SPLITS = ("train", "val", "test")
