"""Multi-controller (multi-host) JAX: one program on every process, one global device mesh.

Every process runs the same script; ``initialize`` connects them (process 0 hosts the
coordinator), after which ``jax.devices()`` lists every process's devices and a jitted
function over a mesh of them runs on all hosts at once. Process 0 (``is_main``) owns files
and the Optuna study. ``initialize`` starts the runtime when asked to: explicit arguments;
``SCORELAB_COORDINATOR`` (``host:port`` of process 0), ``SCORELAB_NUM_PROCESSES`` and
``SCORELAB_PROCESS_ID``; or a cluster that JAX detects by itself: a Slurm step (all of
``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``,
``SLURM_LOCALID``; port ``61440 + SLURM_JOB_ID % 4096`` on the first node unless
``JAX_COORDINATOR_PORT`` is set), Open MPI's ``mpirun`` (``OMPI_MCA_orte_hnp_uri``) or a
Cloud TPU VM. Anywhere else, or with ``SCORELAB_NUM_PROCESSES=1``, it does nothing. On GPUs,
JAX's Slurm/Open MPI detection gives each process only the GPU of its local rank: launch
one task per GPU (or set ``JAX_LOCAL_DEVICE_IDS``).

A peer that dies or hangs is noticed through missed heartbeats: after
``heartbeat_timeout_seconds`` (``SCORELAB_HEARTBEAT_TIMEOUT``; JAX's default 100 s) the
others abort (SIGABRT) logging "Terminating process because the JAX distributed service
detected fatal errors. This most likely indicates that another task died". A peer whose
sockets close (killed, or an uncaught exception: see ``initialize``) makes a collective
fail at once (``JaxRuntimeError: ... Gloo AllGather failed: ... Connection closed by
peer``). Either way no process waits forever.

Besides the mesh and arrays (``global_mesh``, ``global_array``, ``gather``), the helpers a
multi-process entry point needs: ``broadcast_from_main`` (numbers) and ``broadcast_json``
(process 0's decisions, e.g. the next batch of a sweep), ``barrier``, ``check_same_on_all``
(every host loaded the same data and config), ``shutdown`` (all leave together),
``leaving_together``, ``exit_now`` (leave at once, never waiting in JAX's shutdown barrier)
and ``check_interrupt`` (a safe point that every process passes, or stops at, together). Orbax
files that process 0 writes alone: ``lib.checkpoints`` with ``solo=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lib import interrupt

ENV_COORDINATOR = "SCORELAB_COORDINATOR"
ENV_NUM_PROCESSES = "SCORELAB_NUM_PROCESSES"
ENV_PROCESS_ID = "SCORELAB_PROCESS_ID"
ENV_HEARTBEAT = "SCORELAB_HEARTBEAT_TIMEOUT"
ENV_INIT_TIMEOUT = "SCORELAB_INIT_TIMEOUT"
# Seconds process 0 waits before it exits on an error (``exit_now``).
EXIT_GRACE_S = 1.0
# Errors that code run on the same values raises on every process alike (``leaving_together``):
# bad input found after the processes compared config and data, a diverging run, a signal
# agreed on at a safe point (``check_interrupt``).
ALIKE = (ValueError, FloatingPointError, interrupt.Interrupted)

# JAX's cluster environments that start the runtime with no argument. Kubernetes is left out
# (any pod, a CI runner's included, would look like a cluster) and mpi4py is opt-in in JAX.
_AUTO_CLUSTERS = ("ompi", "slurm", "gketpu", "gcetpu")
_joined: list[bool] = []  # [True] once this process has joined a multi-process run


def _detected_cluster() -> Any:
    """The first of JAX's cluster environments (``_AUTO_CLUSTERS``) present here, or None."""
    from jax._src import clusters  # JAX's own detection, so scorelab agrees with it

    for env in getattr(clusters.ClusterEnv, "_cluster_types", []):
        if env.name in _AUTO_CLUSTERS and env.is_env_present():
            return env
    return None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name) or None  # unset or empty: None
    try:
        return None if value is None else int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _requested(address: str | None, count: int | None, index: int | None) -> dict | None:
    """The ``jax.distributed.initialize`` arguments asked for, or None (single process)."""
    kwargs = {
        "coordinator_address": address or os.environ.get(ENV_COORDINATOR) or None,
        "num_processes": _env_int(ENV_NUM_PROCESSES) if count is None else count,
        "process_id": _env_int(ENV_PROCESS_ID) if index is None else index,
    }
    if kwargs["num_processes"] == 1:  # also how to opt out of cluster detection
        return None
    if any(v is not None for v in kwargs.values()):
        missing = [k for k, v in kwargs.items() if v is None]
        if missing:
            raise ValueError(
                f"a multi-process run needs coordinator_address, num_processes and process_id "
                f"(or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); missing {missing}"
            )
        return kwargs
    cluster = _detected_cluster()
    if cluster is None or cluster.get_process_count() <= 1:
        return None
    return {"cluster_detection_method": cluster.name}


def _exit_at_once_on_uncaught_exception() -> None:
    """Makes an uncaught exception end this process at once, after printing it: a normal exit
    would wait in JAX's shutdown barrier (300 s) while the peers wait in a collective for
    this process forever; ``os._exit`` closes its connections, so the peers fail too."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout_seconds: int | None = None,
    initialization_timeout_seconds: int | None = None,
) -> bool:
    """Starts JAX's multi-controller runtime if this program is one of several processes.

    Call it first, before anything touches a device (``jax.devices()``, any computation).
    Explicit arguments win over ``SCORELAB_*`` variables, which win over cluster detection.
    On CPU hosts the cross-process collectives use gloo. In a multi-process run an uncaught
    exception then ends its process at once (exit status 1) so that the peers fail too,
    instead of all of them waiting forever. Logs one line on joining ("joined a
    multi-process run: process i of N, M devices in all (backend)"). A second call does
    nothing.

    Args:
      coordinator_address: ``host:port`` where process 0 serves the coordinator.
      num_processes: how many processes take part.
      process_id: this process's index, in ``range(num_processes)``.
      heartbeat_timeout_seconds: a peer silent for this long counts as dead and every other
        process aborts (default ``SCORELAB_HEARTBEAT_TIMEOUT`` or JAX's 100 s).
      initialization_timeout_seconds: how long to wait for every process to connect; past
        it the process aborts with DEADLINE_EXCEEDED (``SCORELAB_INIT_TIMEOUT``; 300 s).

    Returns:
      True if the run spans more than one process.

    Raises:
      ValueError: only some of the three process arguments are given.
      RuntimeError: a multi-process run is asked for after JAX's backend has started.
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    kwargs = _requested(coordinator_address, num_processes, process_id)
    if kwargs is None:
        return False
    timeouts = {
        "heartbeat_timeout_seconds": heartbeat_timeout_seconds or _env_int(ENV_HEARTBEAT),
        "initialization_timeout": initialization_timeout_seconds or _env_int(ENV_INIT_TIMEOUT),
    }
    kwargs.update({k: v for k, v in timeouts.items() if v is not None})
    # Cross-process collectives between CPU devices (read when the CPU client is created;
    # harmless where the devices are GPUs/TPUs). An explicit "mpi" is left as it is.
    if getattr(jax.config, "jax_cpu_collectives_implementation", None) not in ("mpi", "megascale"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    _joined.append(True)
    _exit_at_once_on_uncaught_exception()
    logging.info(
        "joined a multi-process run: process %d of %d, %d devices in all (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
        jax.default_backend(),
    )
    return jax.process_count() > 1


def joined() -> bool:
    """Whether this process has joined a multi-process run (``initialize``)."""
    return bool(_joined)


def requested() -> bool:
    """Whether ``initialize()`` would start a multi-process run (``SCORELAB_*`` variables or
    a detected cluster), found without starting anything.

    Raises:
      ValueError: only some of the ``SCORELAB_*`` process variables are set, or one is not
        an integer.
    """
    return jax.distributed.is_initialized() or _requested(None, None, None) is not None


def shutdown() -> None:
    """Leaves the multi-process run together with every other process (JAX's shutdown
    barrier): afterwards each may exit in any order without the others aborting. Every
    process must call it; a no-op in one process."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def exit_now(status: int) -> None:
    """Ends this process with ``status``. In a multi-process run: at once (``os._exit``,
    after flushing stdout and stderr), never through JAX's shutdown barrier, where it would
    wait while peers wait in a collective for it; elsewhere ``sys.exit(status)``. Process 0,
    which serves the coordinator, first gives the others ``EXIT_GRACE_S`` to leave: a peer
    that stopped at the same point (the same error on every process) would otherwise be
    aborted (SIGABRT) by JAX for losing its coordinator before its own exit."""
    if not joined():
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    if is_main() and jax.process_count() > 1:
        time.sleep(EXIT_GRACE_S)
    os._exit(status)


def is_main() -> bool:
    """True on process 0, the one that writes files and owns the study."""
    return jax.process_index() == 0


def global_mesh(axis_name: str) -> Mesh:
    """A 1-D mesh named ``axis_name`` over every process's devices, ordered by (process, id)
    on every process: each process's devices hold one contiguous block of a sharded axis."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (axis_name,))


def _to_wire(leaf: Any) -> np.ndarray:
    """64-bit (and wider) values as uint32 words: with x64 off, JAX would cut them to 32."""
    a = np.asarray(leaf)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"broadcast_from_main takes numeric arrays, got dtype {a.dtype}")
    return np.ascontiguousarray(a).reshape(-1).view(np.uint32) if a.dtype.itemsize >= 8 else a


def _from_wire(wire: Any, like: Any) -> np.ndarray:
    a = np.asarray(like)
    wire = np.asarray(wire)
    return wire.view(a.dtype).reshape(a.shape) if a.dtype.itemsize >= 8 else wire


def broadcast_from_main(tree: Any) -> Any:
    """Process 0's values of ``tree`` on every process, as numpy arrays (exact, int64 and
    float64 included). Leaves: numeric arrays or scalars of the same shape and dtype on
    every process. Every process must call it."""
    wire = multihost_utils.broadcast_one_to_all(jax.tree.map(_to_wire, tree))
    return jax.tree.map(_from_wire, wire, tree)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (``json.dumps``'s ``default``)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"broadcast_json cannot send {type(value).__name__}: {value!r}")


def broadcast_json(obj: Any) -> Any:
    """Process 0's ``obj`` (anything ``json.dumps`` takes, numpy scalars too) on every
    process; the others pass anything (None). Floats arrive exactly (``repr`` round-trips),
    tuples as lists. Every process must call it. In one process: ``obj`` itself.

    The bytes travel as a uint8 array padded to a power of two (>= 256), so that messages of
    many lengths share a few compiled broadcasts."""
    if jax.process_count() == 1:
        return obj
    text = json.dumps(obj, default=_plain).encode() if is_main() else b""
    size = int(broadcast_from_main(np.int64(len(text))))
    buffer = np.zeros(max(256, 1 << (size - 1).bit_length()), np.uint8)
    buffer[: len(text)] = np.frombuffer(text, np.uint8)
    return json.loads(bytes(broadcast_from_main(buffer)[:size]).decode())


def barrier(name: str) -> None:
    """Waits until every process has reached ``barrier(name)`` (the same name everywhere);
    a no-op in one process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _crc(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return zlib.crc32(np.ascontiguousarray(value).view(np.uint8).reshape(-1))
    return zlib.crc32(json.dumps(value, sort_keys=True, default=_plain).encode())


def check_same_on_all(what: str, *values: Any) -> None:
    """Raises the same ``ValueError`` on every process unless every process holds the same
    ``values`` (numpy arrays, or JSON-able values such as a config dict): each host reads
    its own files, and a host with other data would make the run silently wrong. Compares
    crc32 checksums; every process must call it; a no-op in one process. Before raising,
    the processes leave the multi-process run together (``shutdown``)."""
    if jax.process_count() == 1:
        return
    crc = zlib.crc32(np.asarray([_crc(v) for v in values], np.uint32).tobytes())
    sums = np.asarray(multihost_utils.process_allgather(np.uint32(crc))).reshape(-1)
    differ = [i for i, c in enumerate(sums) if c != sums[0]]
    if differ:
        shutdown()  # every process raises this: they leave the run together
        raise ValueError(
            f"{what} differ between processes: process(es) {differ} hold other values than "
            "process 0; every process must run the same command on the same files (the "
            "same --config overrides, the same data set files on every host)"
        )


@contextlib.contextmanager
def leaving_together(errors: tuple[type[BaseException], ...] = ALIKE) -> Iterator[None]:
    """Around code that every process runs on the same values (after ``check_same_on_all``),
    so that it raises any of ``errors`` on every process at the same point: the processes
    then leave the run together (``shutdown``) before the error propagates, and none is cut
    off by another's exit (JAX aborts a process whose coordinator, process 0, is gone).
    Other errors (a dead peer's failed collective, a file process 0 alone writes) propagate
    at once."""
    try:
        yield
    except errors:
        shutdown()
        raise


def check_interrupt() -> None:
    """``interrupt.check()`` agreed by every process: raises ``interrupt.Interrupted`` on all
    of them as soon as any one has received a signal (a scheduler may signal one task only),
    so that all stop at the same safe point, where they save together. Every process must
    call it at the same points; in one process it is ``interrupt.check()``."""
    if jax.process_count() == 1:
        return interrupt.check()
    got = multihost_utils.process_allgather(np.int32(interrupt.received() or 0))
    signums = [int(s) for s in np.asarray(got).reshape(-1) if s]
    if signums:
        raise interrupt.Interrupted(signums[0])


def _gather_leaf(leaf: Any) -> np.ndarray:
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
        return np.asarray(leaf)
    if leaf.is_fully_replicated:
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))


def gather(tree: Any) -> Any:
    """Every leaf of ``tree`` as its full numpy value, on every process. A global array
    sharded over processes is all-gathered (every process must call this, in the same
    order); anything held in full here (host numpy included) is read as it is."""
    return jax.tree.map(_gather_leaf, tree)


def global_array(host_array: Any, mesh: Mesh, spec: PartitionSpec) -> jax.Array:
    """A global ``jax.Array`` laid out by ``spec`` over ``mesh``, from a host array that
    every process holds in full (the same values everywhere); each process fills only
    the shards of its own devices."""
    host_array = np.asarray(host_array)
    return jax.make_array_from_callback(
        host_array.shape, NamedSharding(mesh, spec), lambda index: host_array[index]
    )
