"""The gradcheck workload: a full float64 finite-difference check of a model's gradients,
scorelab's against the course's numpy loop over the coordinates."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import timing
from experiments.benchmarks.options import Options
from lib import data, gradcheck, model_check, scores

REG = 1e-3  # the digits check's L2 strength


def numpy_numerical_grad(loss_fn, params: dict[str, np.ndarray], h: float = 1e-5):
    """The course's eval_numerical_gradient: a Python loop over every coordinate."""
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        it = np.nditer(p, flags=["multi_index"])
        while not it.finished:
            i = it.multi_index
            old = p[i]
            p[i] = old + h
            plus = loss_fn(params)
            p[i] = old - h
            minus = loss_fn(params)
            p[i] = old
            g[i] = (plus - minus) / (2 * h)
            it.iternext()
        grads[name] = g
    return grads


def numpy_softmax_loss(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, reg: float):
    """The linear softmax model's mean cross-entropy + L2 on the weights, in numpy."""
    s = x @ p["W"].T + p["b"]
    s = s - s.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(s).sum(axis=1))
    return np.mean(log_z - s[np.arange(len(y)), y]) + reg * np.sum(p["W"] ** 2)


def bench_gradcheck(opts: Options, repeats: int) -> tuple[dict[str, Any], timing.Fns]:
    """A full float64 finite-difference check of the digits linear softmax model
    (``gradcheck.full_check``: every coordinate, against jax.grad and lib.backprop) vs the
    course's numpy loop over the coordinates."""
    ds = data.load("digits")
    x, y = ds.x_train.astype(np.float64), ds.y_train
    obj = model_check.make_objective("linear", "softmax", x, y, REG)  # one loss fn: one compile
    with jax.enable_x64(True):
        params = scores.init_linear(
            jax.random.key(opts.seed), ds.num_features, ds.num_classes, dtype=jnp.float64
        )

    def scorelab_check():
        return gradcheck.full_check(obj.loss, obj.grad_fns, params)

    reports, first = timing.timed_call(scorelab_check)
    params_np = {k: np.array(v) for k, v in params.items()}
    np_loss = functools.partial(numpy_softmax_loss, x=x, y=y, reg=REG)
    fns = {
        "scorelab": scorelab_check,
        "numpy_loop": lambda: numpy_numerical_grad(np_loss, params_np),
    }
    # plain medians: numpy_loop is the only numpy entry, no numpy baseline
    rounds = timing.time_rounds(fns, repeats, baseline=False)
    return {
        "shapes": {
            "num_params": sum(int(np.size(v)) for v in jax.tree.leaves(params)),
            "num_examples": len(y),
            "num_features": ds.num_features,
            "num_classes": ds.num_classes,
        },
        **rounds,
        "compile_seconds": {"scorelab": first - rounds["seconds"]["scorelab"]},
        "grades": {r.name: r.grade for r in reports},
    }, fns
