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

In a multi-process run (``lib.distributed``) the mesh spans every process's devices, so the
lanes (and the padding, to a multiple of the *global* device count) are those of one process
with as many devices: the results are bitwise the same. Every process must then make the
same ``fit_trials`` calls; in a sweep, process 0 decides them (``lead_fit``, inside
``leading``) and the other processes ("followers") repeat each one (``follow``).

``fit_split`` is the same sharded batch for an ensemble's seeds: the keys
``jax.random.split(key, size)`` and one shared hparams row (unbatched, as a plain
``vmap(fit)`` over the keys takes it: on one device, the same program and results).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from lib import distributed, interrupt, settings, train
from lib.types import Params

AXIS = "trials"

# One compiled program per (Setup, batch shape); cached across stages and calls. The second
# shares one (unbatched) minibatch-order key among the trials.
_batched_fit = jax.jit(jax.vmap(train.fit, in_axes=(0, 0, None, None)), static_argnums=3)
_batched_fit_shared_order = jax.jit(
    jax.vmap(train.fit, in_axes=(0, 0, None, None, None)), static_argnums=3
)
# Seeds of an ensemble: keys batched, one hparams row shared by every lane.
_batched_fit_shared_hparams = jax.jit(
    jax.vmap(train.fit, in_axes=(0, None, None, None)), static_argnums=3
)
# Keys made and unmade inside jit: their inputs and outputs may span several processes.
_make_keys = jax.jit(jax.vmap(jax.random.key))
_wrap_key = jax.jit(jax.random.wrap_key_data)
_wrap_keys_as = jax.jit(jax.random.wrap_key_data, static_argnames="impl")
_key_data = jax.jit(jax.random.key_data)


def trial_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"trials"`` over ``devices`` (default: every process's devices,
    ``distributed.global_mesh``; in one process, all local devices)."""
    if devices is None:
        return distributed.global_mesh(AXIS)
    return Mesh(np.array(list(devices)), (AXIS,))


def padded_size(num_trials: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` that is >= ``num_trials``."""
    if num_trials < 1 or num_devices < 1:
        raise ValueError(
            f"need num_trials >= 1 and num_devices >= 1, got {num_trials}, {num_devices}"
        )
    return -(-num_trials // num_devices) * num_devices


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
      dataset: the shared data (ideally already on ``mesh``: ``train.to_device(ds, mesh)``).
      setup: the static structure, the same for every trial of the batch.
      mesh: the device mesh; default ``trial_mesh()``.
      pad_to: run this many lanes (>= len(rows)) so that batches of different sizes
        share one compiled program; rounded up to a multiple of the device count.
      order_seed: if given, every trial draws its minibatches from
        ``jax.random.key(order_seed)`` (``train.fit``'s ``order_key``) instead of from its
        own seed; a trial's result then depends only on (seed, hparams, order_seed).

    Returns:
      (final TrainState, history) with a leading axis of len(rows), on the host (numpy),
      on every process: with a mesh over several processes, every one must make this call.
    """
    m = _check_batch(seeds, rows)
    mesh = trial_mesh() if mesh is None else mesh
    lanes = padded_size(max(m, pad_to or m), mesh.size)
    seeds = list(seeds) + [seeds[0]] * (lanes - m)
    rows = list(rows) + [rows[0]] * (lanes - m)

    def trial_axis(a):  # each process fills the lanes of its own devices
        return distributed.global_array(a, mesh, PartitionSpec(AXIS))

    keys = _make_keys(trial_axis(np.asarray(seeds, np.uint32)))
    hparams = {k: trial_axis(v) for k, v in full_hparams(rows).items()}
    if order_seed is None:
        state, history = _batched_fit(keys, hparams, dataset, setup)
    else:
        key_data = np.asarray(jax.random.key_data(jax.random.key(order_seed)))
        order_key = _wrap_key(distributed.global_array(key_data, mesh, PartitionSpec()))
        state, history = _batched_fit_shared_order(keys, hparams, dataset, setup, order_key)
    return _gathered(state, history, m)


def fit_split(
    key: jax.Array,
    size: int,
    hparams: dict[str, float],
    dataset: train.Data,
    setup: settings.Setup,
    mesh: Mesh | None = None,
    pad_to: int | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Trains ``size`` models from the keys ``jax.random.split(key, size)``, all with one
    ``hparams`` row, in one sharded, vmapped ``fit`` (an ensemble's seeds).

    The lanes are padded to a multiple of ``mesh.size`` with copies of the first key and
    the padding is dropped; the hparams are not batched, so on one device this is exactly
    ``jax.jit(jax.vmap(train.fit, in_axes=(0, None, None, None)))`` over the split keys.

    Args:
      key: a typed key (``jax.random.key(seed)``), the same on every process.
      size: the number of models (>= 1).
      hparams: one hparams dict (names from ``settings.HPARAMS``; the rest default).
      dataset, setup, mesh, pad_to: as ``fit_trials`` takes them.

    Returns:
      (final TrainState, history) with a leading axis of ``size``, on the host (numpy), on
      every process (the state's ``key`` as raw key data); every process must make the call.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (the number of models), got {size!r}")
    size = int(size)
    mesh = trial_mesh() if mesh is None else mesh
    lanes = padded_size(max(size, pad_to or 0), mesh.size)
    key_data = np.asarray(jax.random.key_data(jax.random.split(key, size)))
    key_data = np.concatenate([key_data, np.repeat(key_data[:1], lanes - size, axis=0)])
    keys = _wrap_keys_as(
        distributed.global_array(key_data, mesh, PartitionSpec(AXIS)),
        impl=jax.random.key_impl(key),
    )
    shared = {  # every process fills its own devices' copy
        name: distributed.global_array(value[0], mesh, PartitionSpec())
        for name, value in full_hparams([hparams]).items()
    }
    state, history = _batched_fit_shared_hparams(keys, shared, dataset, setup)
    return _gathered(state, history, size)


def _gathered(state: Any, history: dict, m: int) -> tuple[Any, dict[str, np.ndarray]]:
    """The first ``m`` lanes of a sharded fit's results, as numpy on every process."""
    state = state._replace(key=_key_data(state.key))
    state, history = distributed.gather((state, history))  # every process: all lanes
    return jax.tree.map(lambda a: a[:m], (state, history))


def _check_batch(seeds: Sequence[int], rows: Sequence[dict[str, float]]) -> int:
    """The number of trials, after checking there is one seed per row and at least one."""
    if len(rows) == 0 or len(seeds) != len(rows):
        raise ValueError(
            f"need one seed per hparams row and at least one trial; got "
            f"{len(seeds)} seeds and {len(rows)} rows"
        )
    return len(rows)


def lead_fit(
    seeds: Sequence[int],
    rows: Sequence[dict[str, float]],
    dataset: train.Data,
    setup: settings.Setup,
    mesh: Mesh,
    pad_to: int | None = None,
    order_seed: int | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """``fit_trials``, called by process 0 of a sweep: in a multi-process run every follower
    (waiting in ``follow``) receives the call and makes it too, with the same values (they
    travel as JSON: exact). In one process, exactly ``fit_trials``.

    Args:
      seeds, rows, dataset, setup, mesh, pad_to, order_seed: as ``fit_trials`` takes them.

    Returns:
      ``fit_trials``'s (final TrainState, history), on the host (numpy).
    """
    _check_batch(seeds, rows)  # before the followers are told: they would wait in the fit
    call = distributed.broadcast_json(
        {
            "op": "fit",
            "seeds": [int(s) for s in seeds],
            "rows": [dict(row) for row in rows],
            "setup": dataclasses.asdict(setup),
            "pad_to": pad_to,
            "order_seed": order_seed,
        }
    )
    return _fit_call(call, dataset, mesh)


def _fit_call(call: dict[str, Any], dataset: train.Data, mesh: Mesh):
    setup = settings.Setup(**call["setup"])  # equal, so the same compiled program
    return fit_trials(
        call["seeds"], call["rows"], dataset, setup, mesh, call["pad_to"], call["order_seed"]
    )


def follow(dataset: train.Data, mesh: Mesh) -> None:
    """A follower's part of a sweep: makes every ``fit_trials`` call process 0 makes
    (``lead_fit``) until process 0 stops. Returns when the sweep finished; when process 0
    stopped on bad input, a signal or an error, leaves the run with the others and raises
    (or exits) as process 0 does: ``ValueError`` with its message, ``interrupt.Interrupted``
    with its signal, else exit status 1 with one line."""
    while (call := distributed.broadcast_json(None))["op"] != "stop":
        if call["op"] == "fit":
            _fit_call(call, dataset, mesh)
    if call["status"] == 0:
        distributed.barrier("sweep-done")
        return
    distributed.shutdown()
    if call["kind"] == "interrupted":
        raise interrupt.Interrupted(call["status"] - 128)
    if call["kind"] == "bad_input":
        raise ValueError(call["message"])
    sys.stderr.write(f"error: process 0 failed: {call['message']}\n")
    distributed.exit_now(call["status"])


def keep_followers_waiting() -> None:
    """Process 0, in a long stretch without fits (waiting for other workers of a shared
    study): a short message, so that no follower waits in one collective for long."""
    distributed.broadcast_json({"op": "wait"})


def _stop(status: int, kind: str, message: str) -> None:
    distributed.broadcast_json({"op": "stop", "status": status, "kind": kind, "message": message})
    if status == 0:
        distributed.barrier("sweep-done")
    else:
        distributed.shutdown()  # with the followers: then every process may exit at once


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Process 0's part of a sweep, around everything it alone decides: on leaving, tells
    the followers (in ``follow``) to stop, with how it stopped (finished; bad input, exit
    status 2; a signal, 128 + its number; another error, 1) and then re-raises. A
    ``JaxRuntimeError`` (a collective failed: a peer died) is not told: the peers fail on
    their own. A no-op in one process."""
    if jax.process_count() == 1:
        yield
        return
    try:
        yield
    except interrupt.Interrupted as e:
        _stop(e.exit_status, "interrupted", str(e))
        raise
    except (ValueError, OSError, FloatingPointError) as e:  # cli.BAD_INPUT: exit status 2
        _stop(2, "bad_input", str(e))
        raise
    except Exception as e:
        if not isinstance(e, jax.errors.JaxRuntimeError):
            _stop(1, "error", f"{type(e).__name__}: {e}")
        raise
    _stop(0, "finished", "")


def diverged(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per trial: True where any epoch was not ``train.finite`` (a NaN/inf training or
    validation loss, or NaN/inf weights). (M, E) -> (M,)"""
    return ~np.all(train.finite(history), axis=-1)


def trial_params(state: Any, i: int) -> Params:
    """The params of lane ``i`` of a batched TrainState."""
    return jax.tree.map(lambda a: np.asarray(a[i]), state.params)
