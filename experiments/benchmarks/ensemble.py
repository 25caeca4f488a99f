"""The ensemble workload: the class scores of a group of linear members, six ways."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import timing
from experiments.benchmarks.options import Options
from lib import ensemble, members, scores, settings


def wide_matmul(p, x):
    """The floor: one (N, D) x (D, M*K) product, nothing else, at scorelab's precision."""
    m, k, d = p["W"].shape
    w = p["W"].reshape(m * k, d)
    return jnp.matmul(x, w.T, precision=scores.PRECISION) + p["b"].reshape(m * k)


def wide_matmul_wx(p, x):
    """`wide_matmul`'s product, oriented (M*K, D) x (D, N)."""
    m, k, d = p["W"].shape
    w = p["W"].reshape(m * k, d)
    wide = jax.lax.dot_general(w, x, (((1,), (1,)), ((), ())), precision=scores.PRECISION)
    return wide + p["b"].reshape(m * k, 1)


def _members(opts: Options):
    """``members`` random linear members and ``ensemble_n`` random rows: (x, params) on the
    host (numpy) and on the device."""
    m, n, d, k = opts.members, opts.ensemble_n, opts.num_features, opts.num_classes
    x_np, _ = timing.random_data(n, d, k, opts.seed)
    rng = np.random.default_rng(opts.seed + 1)
    params_np = {
        "W": 1e-3 * rng.standard_normal((m, k, d), dtype=np.float32),
        "b": 1e-3 * rng.standard_normal((m, k), dtype=np.float32),
    }
    return x_np, params_np, jax.device_put(x_np), jax.device_put(params_np)


def _numpy_loop(x_np, params_np) -> timing.Fns:
    """A numpy loop over the members, in numpy's layouts and thread counts."""
    w_dk = [np.ascontiguousarray(w.T) for w in params_np["W"]]  # the course's (D, K)

    def numpy_loop(layout):
        if layout == "DK":
            return [x_np.dot(w) + b for w, b in zip(w_dk, params_np["b"])]
        return [x_np.dot(w.T) + b for w, b in zip(params_np["W"], params_np["b"])]

    return timing.numpy_variants(numpy_loop)


def bench_ensemble(opts: Options, repeats: int) -> tuple[dict[str, Any], timing.Fns]:
    """Class scores (M, N, K) of ``members`` linear models, six ways.

    ``scorelab`` is what ``lib.ensemble.evaluate`` runs for a group of linear members:
    ``ensemble.stacked_scores`` on the device-resident rows (one wide product
    ``[W_1; ...; W_M] x^T`` through ``member_scores_linear_wide``, the scores copied back to
    the host). ``scorelab_wide`` is the jitted product alone, ``scorelab_vmap`` the plain
    ``jax.vmap`` of the score function (``member_scores``), ``wide_matmul`` and
    ``wide_matmul_wx`` the floor (one (N, D) x (D, M*K) product and nothing else, in its two
    orientations; ``scorelab_over_wide_matmul`` is against the faster), and a numpy loop
    over the members.
    """
    m, n, d, k = opts.members, opts.ensemble_n, opts.num_features, opts.num_classes
    x_np, params_np, x, params = _members(opts)
    group = members.Group(settings.Setup(d, k), params, tuple(f"member {i}" for i in range(m)))

    def scorelab():
        return ensemble.stacked_scores([group], x)  # returns host arrays

    got, c_scorelab = timing.timed_call(scorelab)  # compiles its program: the first call
    jitted = {
        "scorelab_vmap": functools.partial(ensemble.member_scores, model="linear"),
        "scorelab_wide": ensemble.member_scores_linear_wide,
        "wide_matmul": wide_matmul,
        "wide_matmul_wx": wide_matmul_wx,
    }
    compiled, compile_seconds = {}, {"scorelab": c_scorelab}
    for name, fn in jitted.items():
        compiled[name], compile_seconds[name] = timing.compile_timed(jax.jit(fn), params, x)
    want = np.einsum("nd,mkd->mnk", x_np, params_np["W"]) + params_np["b"][:, None, :]
    vmapped = np.asarray(compiled["scorelab_vmap"](params, x))
    error = max(float(np.max(np.abs(a - want))) for a in (got, vmapped))

    fns = {"scorelab": scorelab}
    for name in ("scorelab_wide", "scorelab_vmap", "wide_matmul", "wide_matmul_wx"):
        fns[name] = functools.partial(_blocking_call, compiled[name], params, x)
    fns |= _numpy_loop(x_np, params_np)
    rounds = timing.time_rounds(fns, repeats)
    seconds = rounds["seconds"]
    return {
        "shapes": {"members": m, "num_examples": n, "num_features": d, "num_classes": k},
        **rounds,
        "compile_seconds": compile_seconds,
        "max_abs_error": error,
        "scorelab_over_wide_matmul": seconds["scorelab"]
        / min(seconds["wide_matmul"], seconds["wide_matmul_wx"]),
    }, fns


def _blocking_call(fn, *args):
    return jax.block_until_ready(fn(*args))
