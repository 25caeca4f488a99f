"""The sweep workload: a batch of configurations trained at once, as lib.search runs them,
against a numpy loop over the configurations, and the floor of its products."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import numpy_trainer, timing
from experiments.benchmarks.options import Options
from lib import scores, settings, sharding, train

SIDE = 2048  # the floor's square product: SIDE x SIDE times SIDE x SIDE, float32


def _configs(opts: Options, rng: np.random.Generator):
    """``sweep_configs`` random (learning rate, reg) pairs: (lrs, regs, hparam rows)."""
    m = opts.sweep_configs
    lrs = 10.0 ** rng.uniform(-4, -2, m)
    regs = 10.0 ** rng.uniform(-5, -2, m)
    rows = [
        {"learning_rate": float(lr), "reg": float(reg), "mu": opts.mu} for lr, reg in zip(lrs, regs)
    ]
    return lrs, regs, rows


def _numpy_sweep(opts: Options, setup: settings.Setup, ds, lrs, regs, rng) -> timing.Fns:
    """The numpy loop over the configurations (each its epochs, then the epoch's train and
    val accuracies), in numpy's layouts and thread counts; each returns the best val
    accuracy."""
    n = opts.sweep_train
    x_np, y_np, xv_np, yv_np = ds.x_train, ds.y_train, ds.x_val, ds.y_val
    steps = train.steps_per_epoch(setup, n)
    w_init = np.asarray(train.init_params(jax.random.key(0), setup)["W"])
    rows = setup.train_eval_size

    def numpy_loop(layout):
        best = 0.0
        for lr, reg in zip(lrs, regs):
            model = numpy_trainer.init(w_init, np.zeros(setup.num_classes), layout)
            for _ in range(setup.num_epochs):
                b = timing.host_batches(rng, n, steps, setup.batch_size)
                numpy_trainer.train_epoch(model, x_np, y_np, b, lr, reg, opts.mu)
                numpy_trainer.accuracy(model, x_np[:rows], y_np[:rows])
                best = max(best, numpy_trainer.accuracy(model, xv_np, yv_np))
        return best

    return timing.numpy_variants(numpy_loop)


def _peak_product() -> timing.Fns:
    """One SIDE^3 float32 product at scorelab's precision: its rate bounds the sweep."""
    square = jax.device_put(np.ones((SIDE, SIDE), np.float32))
    product = jax.jit(lambda a: jnp.matmul(a, a, precision=scores.PRECISION))
    return {f"matmul_{SIDE}": lambda: jax.block_until_ready(product(square))}


def _floor(opts: Options, setup: settings.Setup, seconds: dict[str, float]) -> dict[str, float]:
    """The sweep's products (forward and dW per step, the accuracies' forward passes per
    epoch) at the float32 rate of a large square product on this device."""
    steps = train.steps_per_epoch(setup, opts.sweep_train)
    eval_rows = setup.train_eval_size + opts.num_val
    d, k, m = setup.num_features, setup.num_classes, opts.sweep_configs
    flop = 2 * d * k * m * setup.num_epochs * (2 * steps * setup.batch_size + eval_rows)
    peak = 2 * SIDE**3 / seconds[f"matmul_{SIDE}"]
    return {
        "products_gflop": flop / 1e9,
        "peak_gflops": peak / 1e9,
        "floor_seconds": flop / peak,
        "numpy_over_floor": seconds["numpy"] * peak / flop,
    }


def bench_sweep(opts: Options, repeats: int) -> tuple[dict[str, Any], timing.Fns]:
    """``sweep_configs`` learning rates x regs, ``sweep_epochs`` epochs each: scorelab as
    lib.search runs a batch of trials, ``sharding.fit_trials(seeds, rows, data, setup,
    order_seed=...)`` (one seed per configuration, one shared minibatch order), vs a numpy
    loop over the configurations. ``matmul_2048`` times one 2048^3 float32 product: its
    rate (``peak_gflops``) bounds the sweep from below (``floor_seconds``: the sweep's
    ``products_gflop`` at that rate; ``numpy_over_floor``: the most any implementation of
    these products could gain over the numpy loop here).

    The ``scorelab`` time is the whole call: stacking and padding the hparams to the device
    count, placing them on the trial mesh, the vmapped ``fit`` and the copy of the final
    states and histories to the host. ``scorelab_own_order`` is the same call without
    ``order_seed`` (each configuration draws its own minibatch order). Compile time is the
    first call's time (compile + one run), before the timed rounds.
    """
    n, d, k = opts.sweep_train, opts.num_features, opts.num_classes
    setup = settings.Setup(
        d,
        k,
        optimizer="momentum",
        num_epochs=opts.sweep_epochs,
        batch_size=opts.batch_size,
        train_eval_size=min(1000, n),
    )
    ds = timing.pixel_dataset(n, opts.num_val, d, k, opts.seed)
    mesh = sharding.trial_mesh()
    dataset = train.to_device(ds, mesh)  # as lib.search does
    rng = np.random.default_rng(opts.seed)
    lrs, regs, rows = _configs(opts, rng)
    seeds = [opts.seed + i for i in range(opts.sweep_configs)]

    def fit(order_seed):
        return lambda: sharding.fit_trials(seeds, rows, dataset, setup, mesh, order_seed=order_seed)

    fns = {"scorelab": fit(opts.seed), "scorelab_own_order": fit(None)}
    # fit_trials returns host arrays: the call has finished
    compile_seconds = {name: timing.timed_call(fn)[1] for name, fn in fns.items()}
    fns |= _peak_product() | _numpy_sweep(opts, setup, ds, lrs, regs, rng)
    rounds = timing.time_rounds(fns, repeats)
    seconds = rounds["seconds"]
    shapes = {
        "configs": opts.sweep_configs,
        "epochs": setup.num_epochs,
        "num_train": n,
        "num_val": opts.num_val,
        "num_features": d,
        "num_classes": k,
        "batch_size": setup.batch_size,
        "devices": mesh.size,
    }
    return {
        "shapes": shapes,
        **rounds,
        "compile_seconds": compile_seconds,
        "numpy_over_scorelab": seconds["numpy"] / seconds["scorelab"],
        **_floor(opts, setup, seconds),
    }, fns
