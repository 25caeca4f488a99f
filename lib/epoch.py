"""The trainer: a run's state, its minibatch order, one jitted epoch, and a pure ``fit`` to
vmap over hyperparameters and seeds (``lib.train`` runs it as an experiment).

A run is a static `settings.Setup` (the structure: model, loss, optimizer, sizes) and an
``hparams`` dict of scalars (learning rate, reg, ...; `settings.HPARAMS`) that may be traced,
so one compiled program serves every value and ``jax.vmap`` over a batch of hparams (or of
keys) trains many models at once on shared data.

One epoch is one ``lax.scan`` over minibatches drawn on the device from a per-epoch
permutation (``fold_in(key, epoch)``); the host reads the metrics once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec

from lib import data, distributed, schedules, scores, settings, updates
from lib.model import accuracy, evaluate, init_params, objective
from lib.settings import DEFAULT_HPARAMS, Setup
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


def steps_per_epoch(setup: Setup, num_train: int) -> int:
    return 1 if settings.is_full_batch(setup) else num_train // setup.batch_size


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
    return schedules.in_updates(setup.schedule, lr, hparams, steps, setup.schedule_every)


def make_rule(setup: Setup, hparams, schedule, full_loss: Callable[[Params], Array]):
    """The update rule ``setup.optimizer`` names (``updates.OPTIMIZERS``), closed over
    (possibly traced) hparams: a minibatch rule over ``schedule``, a full-batch rule (newton,
    lbfgs) over the whole-training-set objective ``full_loss``."""
    return updates.build(setup.optimizer, hparams, schedule, full_loss)


def init_state(key: PRNGKey, hparams, setup: Setup, num_train: int) -> TrainState:
    """A fresh TrainState: params from one half of ``key``, the training key from the other."""
    init_key, train_key = jax.random.split(key)
    params = init_params(init_key, setup)
    schedule = make_schedule(setup, hparams, steps_per_epoch(setup, num_train))
    opt_state = make_rule(setup, hparams, schedule, lambda p: 0.0).init(params)
    ema, ema_state = (), ()
    if setup.ema:
        ema, ema_state = params, optax.ema(hparams["ema_decay"], debias=True).init(params)
    return TrainState(params, opt_state, ema, ema_state, train_key, jnp.zeros((), jnp.int32))


def _global_norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def _minibatches(x, y, setup: Setup, order_key, epoch, row_blocks: int, batch_sharding=None):
    """An epoch's steps: (batches: indices (steps, batch_size), ``minibatch(indices) -> (x
    rows, labels, row blocks)``, the float32 rows of the whole set or None). A full-batch rule
    (newton, lbfgs) takes one step on every row. With ``batch_sharding`` (data parallel,
    minibatch rules only) each step's indices are split by it over a mesh of replicated data
    and params: each device gathers and scores its share and XLA sums the gradients."""
    if settings.is_full_batch(setup):
        x_rows = data.rows(x)
        return jnp.zeros((1, 0), jnp.int32), lambda batch: (x_rows, y, 1), x_rows
    # In bounds by construction: no clamping or fill in the gathers.
    batches = epoch_batches(order_key, epoch, x.shape[0], setup)
    blocks = row_blocks if isinstance(x, data.Pixels) else 1

    def minibatch(batch):
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return data.rows(x, batch), data.rows(y, batch), blocks

    return batches, minibatch, None


def train_epoch(
    state: TrainState,
    hparams,
    x: Array | data.Pixels,
    y: Array,
    setup: Setup,
    order_key: PRNGKey | None = None,
    epoch: Array | None = None,
    row_blocks: int = ROW_BLOCKS,
    batch_sharding: jax.sharding.Sharding | None = None,
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
      batch_sharding: data parallel: each minibatch split by it over a mesh (`_minibatches`).
    """
    full_batch, steps = settings.is_full_batch(setup), steps_per_epoch(setup, x.shape[0])
    epoch = state.epoch if epoch is None else epoch
    order_key = state.key if order_key is None else order_key
    schedule = make_schedule(setup, hparams, steps)
    batches, minibatch, x_rows = _minibatches(
        x, y, setup, order_key, epoch, row_blocks, batch_sharding
    )
    rule = make_rule(setup, hparams, schedule, lambda p: objective(p, x_rows, y, hparams, setup))
    ema_tx = optax.ema(hparams["ema_decay"], debias=True) if setup.ema else None
    # Dropout only in minibatch training; [0] of the epoch key draws the minibatches.
    use_dropout = scores.model(setup.model).dropout and not full_batch
    dropout_key = jax.random.split(jax.random.fold_in(state.key, epoch))[1]

    def step(carry, inputs):
        params, opt_state, ema, ema_state = carry
        i, batch = inputs
        xb, yb, blocks = minibatch(batch)
        key = jax.random.fold_in(dropout_key, i) if use_dropout else None
        value, grads = jax.value_and_grad(objective)(params, xb, yb, hparams, setup, key, blocks)
        new_params, opt_state = rule.apply(params, opt_state, grads)
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
    # The rate of the epoch's last update (none for lbfgs and newton, which take no rate).
    lr = jnp.float32(jnp.nan) if full_batch else schedule((epoch + 1) * steps - 1)
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
    batch_sharding: jax.sharding.Sharding | None = None,
):
    """``train_epoch`` then the per-epoch accuracies; returns (state, metrics)."""
    x, y = dataset.x_train, dataset.y_train
    state, m = train_epoch(
        state, hparams, x, y, setup, order_key, epoch, row_blocks, batch_sharding
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


def to_device(
    ds: data.Dataset, mesh: jax.sharding.Mesh | None = None, rows_axis: str | None = None
) -> Data:
    """The training and validation splits on the device; pixels stay uint8 (`data.Pixels`).

    With a ``mesh``: one copy on every device of it (of every process, each filling its own
    devices from its own ``ds``, which must hold the same values on every process), or with
    ``rows_axis`` (a data-parallel run's ``shard_data``) the training rows and labels split
    over that mesh axis, each device holding its share; a minibatch's rows are then gathered
    from the devices that hold them (XLA: each gathers its own, then one sum)."""
    x_train = ds.x_train
    if ds.train_pixels is not None:
        x_train = data.Pixels(ds.train_pixels, ds.mean, np.float32(ds.scale))
    if mesh is None:
        return jax.device_put(Data(x_train, ds.y_train, ds.x_val, ds.y_val))

    def place(a, spec=None):
        return distributed.global_array(a, mesh, PartitionSpec() if spec is None else spec)

    rows = PartitionSpec(rows_axis)  # PartitionSpec(None): replicated
    if isinstance(x_train, data.Pixels):
        x_train = data.Pixels(place(x_train.raw, rows), place(x_train.mean), place(x_train.scale))
    else:
        x_train = place(x_train, rows)
    return Data(x_train, place(ds.y_train, rows), place(ds.x_val), place(ds.y_val))


# A key's raw data and back, inside jit: a data-parallel run's key spans its processes.
_key_data = jax.jit(jax.random.key_data)
_wrap_key_data = jax.jit(jax.random.wrap_key_data)


def to_checkpoint(state: TrainState) -> dict:
    """The pytree a training checkpoint holds (the key as raw key data)."""
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "ema": state.ema,
        "ema_state": state.ema_state,
        "key": _key_data(state.key),
        "epoch": state.epoch,
    }


def from_checkpoint(tree: dict) -> TrainState:
    """Inverse of ``to_checkpoint``."""
    return TrainState(
        tree["params"],
        tree["opt_state"],
        tree["ema"],
        tree["ema_state"],
        _wrap_key_data(tree["key"]),
        tree["epoch"],
    )
