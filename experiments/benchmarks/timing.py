"""What every benchmark workload shares: interleaved timing, medians, compile times, a trace
of scorelab's XLA ops, the machine's description and the synthetic data."""

from __future__ import annotations

import collections
import glob
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl

from lib import data, settings, train

Fns = dict[str, Callable[[], Any]]

# ----------------------------------------------------------------------------- timing


def interleaved(fns: Fns, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Times every fn in ``repeats`` interleaved rounds (A, A, B, B, C, C, A, A, ...).

    Each fn must block until its work is done (``jax.block_until_ready``). In a round each
    fn runs twice in a row: the first call (``cold``) follows another implementation's
    work, the second (``warm``, the figure reported) follows its own, as the epochs of a
    training run follow each other. On this project's 2-core VM, XLA's first call after
    other work is slower, by more after busy work (a Python loop, numpy's products) than
    after idle time; numpy shows no such penalty (OpenBLAS's threads spin between calls).
    The cause (the runtime's parked threads, the VM's scheduling of idle vCPUs) is not
    pinned down, so both figures are reported. One untimed warm-up call of each fn
    (compilation, first-touch allocations) comes first.

    Returns:
      (warm, cold): implementation name -> the seconds of each round.
    """
    for fn in fns.values():
        fn()
    warm = {name: [] for name in fns}
    cold = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for times in (cold, warm):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return warm, cold


def medians(times: dict[str, list[float]], baseline: bool = True) -> dict[str, float]:
    """The median of each implementation's times; with ``baseline``, also ``numpy``: the
    fastest of the ``numpy_*`` variants."""
    out = {name: float(np.median(t)) for name, t in times.items()}
    numpy_names = [n for n in out if n.startswith("numpy_")]
    if baseline and numpy_names:
        out["numpy"] = min(out[n] for n in numpy_names)
    return out


def time_rounds(fns: Fns, repeats: int, baseline: bool = True) -> dict[str, dict[str, float]]:
    """`interleaved`'s rounds, summed up: ``seconds`` (the warm medians), ``min_seconds``
    (the fastest warm round) and ``cold_seconds`` (the cold medians); see `medians`."""
    warm, cold = interleaved(fns, repeats)
    return {
        "seconds": medians(warm, baseline),
        "min_seconds": {name: float(min(t)) for name, t in warm.items()},
        "cold_seconds": medians(cold, baseline),
    }


def compile_timed(jitted, *args):
    """``(compiled, seconds)``: the executable jax would run for ``args``, and its compile time."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``: for a host-level entry, its first call's time (compile + one run)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def profile_ops(fn: Callable[[], Any], calls: int = 3, top: int = 12) -> list[dict[str, Any]]:
    """Where ``fn``'s time goes: a ``jax.profiler`` trace of ``calls`` calls, op by op.

    Returns the ``top`` XLA ops (fusions, products, sorts, ...) by time, each with its
    milliseconds and count per call. The times are summed over the runtime's threads:
    ops that ran side by side on different cores both count, so they may add up to more
    than the wall time. Python and the runtime's own bookkeeping events are left out.
    """
    fn()  # warm: the trace shows a call like the timed ones
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(calls):
                fn()
        (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
        profile = jax.profiler.ProfileData.from_file(path)
    ms, count = collections.defaultdict(float), collections.Counter()
    skip = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ")
    for plane in profile.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # the XLA runtime's worker threads
                continue
            for event in line.events:
                if not event.name.startswith(skip):
                    ms[event.name] += event.duration_ns / 1e6 / calls
                    count[event.name] += 1
    ranked = sorted(ms, key=ms.get, reverse=True)[:top]
    return [{"op": op, "ms": ms[op], "count": count[op] / calls} for op in ranked]


def numpy_variants(run: Callable[[str], Any]) -> Fns:
    """numpy's two weight layouts, each with BLAS's default threads and with one thread."""

    def limited(layout):
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            return run(layout)

    return {
        "numpy_dk": lambda: run("DK"),
        "numpy_kd": lambda: run("KD"),
        "numpy_dk_1thread": lambda: limited("DK"),
        "numpy_kd_1thread": lambda: limited("KD"),
    }


# ----------------------------------------------------------------------------- the machine


def blas_info() -> list[dict[str, Any]]:
    """What threadpoolctl sees: the BLAS / OpenMP libraries, kernel and thread counts."""
    keep = ("internal_api", "version", "architecture", "num_threads")
    return [{k: info.get(k) for k in keep} for info in threadpoolctl.threadpool_info()]


def device_info() -> str:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    return f"{dev.platform}:{dev.device_kind} x{jax.device_count()} ({cpu})"


# ----------------------------------------------------------------------------- data


def pixel_dataset(num: int, num_val: int, num_features: int, num_classes: int, seed: int):
    """CIFAR-like data: random uint8 pixels and labels, preprocessed as the cifar10 configs
    are (centred on the training mean, times 1/255); val and test are the same rows."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (num + num_val, num_features), dtype=np.uint8)
    y = rng.integers(0, num_classes, num + num_val, dtype=np.int32)
    val = (x[num:], y[num:])
    splits = {"train": (x[:num], y[:num]), "val": val, "test": val}
    names = [str(c) for c in range(num_classes)]
    return data.from_splits("random pixels", splits, names, (num_features,), scale=1 / 255)


def random_data(num: int, num_features: int, num_classes: int, seed: int):
    """CIFAR-shaped random rows: float32 N(0, 1) features and uniform int32 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num, num_features), dtype=np.float32)
    y = rng.integers(0, num_classes, num, dtype=np.int32)
    return x, y


def epoch_batches(state: train.TrainState, n: int, setup: settings.Setup, epoch: int) -> np.ndarray:
    """The minibatch indices (steps, B) scorelab's ``train_epoch`` draws for ``epoch`` (0-based)."""
    return np.asarray(train.epoch_batches(state.key, jnp.int32(epoch), n, setup))


def host_batches(rng: np.random.Generator, n: int, steps: int, batch_size: int) -> np.ndarray:
    """A numpy loop's minibatch indices (steps, B): a fresh permutation drawn on the host, as
    the course's code shuffles."""
    return rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
