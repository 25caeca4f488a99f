"""A batch of trials as one jitted program: ``vmap(train.fit)`` with the trial axis sharded.

The keys and every hyperparameter carry a leading trial axis of size M, split over a 1-D
mesh of all local devices (``PartitionSpec("trials")``); the data are replicated (each
device holds one copy, shared by all of its trials, never one copy per trial). Trials
given one ``order_seed`` share their minibatch order (common random numbers): each
minibatch is then gathered once for all trials and their products are one wide matrix
product, several times faster on a CPU than trials that each draw their own. M is padded
to a multiple of the device count with copies of the first trial; the padding lanes are
dropped from the results. Trials never interact: lane i computes exactly what ``fit`` would
compute for trial i alone (up to float rounding), so a diverging lane poisons no other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lib import settings, train
from lib.types import Params

AXIS = "trials"

# One compiled program per (Setup, batch shape); cached across stages and calls. The second
# shares one (unbatched) minibatch-order key among the trials.
_batched_fit = jax.jit(jax.vmap(train.fit, in_axes=(0, 0, None, None)), static_argnums=3)
_batched_fit_shared_order = jax.jit(
    jax.vmap(train.fit, in_axes=(0, 0, None, None, None)), static_argnums=3
)


def trial_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"trials"`` over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (AXIS,))


def padded_size(num_trials: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` that is >= ``num_trials``."""
    if num_trials < 1 or num_devices < 1:
        raise ValueError(
            f"need num_trials >= 1 and num_devices >= 1, got {num_trials}, {num_devices}"
        )
    return -(-num_trials // num_devices) * num_devices


def replicate(dataset: train.Data, mesh: Mesh) -> train.Data:
    """Puts one copy of the data on every device of ``mesh`` (shared by all trials)."""
    rep = NamedSharding(mesh, PartitionSpec())
    return train.Data(*(jax.device_put(a, rep) for a in dataset))


def full_hparams(rows: Sequence[dict[str, float]]) -> dict[str, np.ndarray]:
    """Stacks per-trial hparam dicts into ``{name: float32 (M,)}`` over every name in
    ``settings.HPARAMS`` (defaults for names a row leaves out)."""
    return {
        name: np.asarray([row.get(name, default) for row in rows], np.float32)
        for name, default in settings.DEFAULT_HPARAMS.items()
    }


def fit_trials(
    seeds: Sequence[int],
    rows: Sequence[dict[str, float]],
    dataset: train.Data,
    setup: settings.Setup,
    mesh: Mesh | None = None,
    pad_to: int | None = None,
    order_seed: int | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Trains one model per (seed, hparams row), all in one sharded, vmapped ``fit``.

    Args:
      seeds: one integer seed per trial (its key is ``jax.random.key(seed)``).
      rows: one hparams dict per trial (names from ``settings.HPARAMS``).
      dataset: the shared data (ideally already ``replicate``d over ``mesh``).
      setup: the static structure, the same for every trial of the batch.
      mesh: the device mesh; default ``trial_mesh()``.
      pad_to: run this many lanes (>= len(rows)) so that batches of different sizes
        share one compiled program; rounded up to a multiple of the device count.
      order_seed: if given, every trial draws its minibatches from
        ``jax.random.key(order_seed)`` (``train.fit``'s ``order_key``) instead of from its
        own seed; a trial's result then depends only on (seed, hparams, order_seed).

    Returns:
      (final TrainState, history) with a leading axis of len(rows), on the host (numpy).
    """
    m = len(rows)
    if m == 0 or len(seeds) != m:
        raise ValueError(
            f"need one seed per hparams row and at least one trial; got "
            f"{len(seeds)} seeds and {m} rows"
        )
    mesh = trial_mesh() if mesh is None else mesh
    lanes = padded_size(max(m, pad_to or m), mesh.size)
    seeds = list(seeds) + [seeds[0]] * (lanes - m)
    rows = list(rows) + [rows[0]] * (lanes - m)
    shard = NamedSharding(mesh, PartitionSpec(AXIS))
    keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)), shard)
    hparams = {k: jax.device_put(v, shard) for k, v in full_hparams(rows).items()}
    if order_seed is None:
        state, history = _batched_fit(keys, hparams, dataset, setup)
    else:
        order_key = jax.device_put(jax.random.key(order_seed), NamedSharding(mesh, PartitionSpec()))
        state, history = _batched_fit_shared_order(keys, hparams, dataset, setup, order_key)
    state = state._replace(key=jax.random.key_data(state.key))
    state, history = jax.device_get((state, history))
    return jax.tree.map(lambda a: a[:m], (state, history))


def diverged(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per trial: True where any epoch was not ``train.finite`` (a NaN/inf training or
    validation loss, or NaN/inf weights). (M, E) -> (M,)"""
    return ~np.all(train.finite(history), axis=-1)


def trial_params(state: Any, i: int) -> Params:
    """The params of lane ``i`` of a batched TrainState."""
    return jax.tree.map(lambda a: np.asarray(a[i]), state.params)
