r"""Side-by-side timings: scorelab against the course's numpy code, in one process.

  python -m experiments.bench --workload=train|two_layer|sweep|ensemble|gradcheck [--json] [--profile]

Every implementation of a workload is warmed up (compiled) first, then timed in interleaved
rounds (A, A, B, B, C, C, A, A, ...) so that a noisy machine slows them alike; the figures
are the medians over ``--repeats`` rounds of each implementation's second call in a round
(``seconds``, "warm") and of its first (``cold_seconds``; see `interleaved`). Compile time is measured apart: ``lower().compile()``, or
where scorelab's entry is a host-level call (sweep: ``sharding.fit_trials``; ensemble:
``ensemble.stacked_scores``) the time of its first call (compile + one run).
With ``--json`` the last line printed is one JSON object: ``workload``, ``shapes``,
``device``, ``seconds`` (implementation -> median seconds; scorelab's own entry is
``scorelab``), ``cold_seconds``, ``compile_seconds`` and workload-specific checks.
``--profile`` adds ``profile``: where scorelab's time goes, XLA op by op (`profile_ops`).

numpy's speed depends on OpenBLAS's kernel and threads: the ``blas`` entry records what
threadpoolctl reports, and the numpy variants are timed with the default thread count and
with one thread (the faster is the ``numpy`` baseline). To benchmark a current numpy on
machines that set OPENBLAS_CORETYPE, run the command once more under
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``.
"""

from __future__ import annotations

import collections
import functools
import glob
import json
import platform
import tempfile
import time
from typing import Any, Callable

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl

from experiments import numpy_trainer
from lib import data, ensemble, members, scores, settings, sharding, train

WORKLOADS = ("train", "sweep", "ensemble", "gradcheck", "two_layer")

_WORKLOAD = flags.DEFINE_enum("workload", "train", WORKLOADS, "What to time.")
_JSON = flags.DEFINE_bool("json", False, "End with one JSON line of the results.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds (after one warm-up round).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 49000, "train: training examples.")
_NUM_FEATURES = flags.DEFINE_integer("num_features", 3072, "Features D (CIFAR-10: 3072).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classes K.")
_HIDDEN = flags.DEFINE_integer("hidden", 200, "two_layer: hidden units H.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 200, "Minibatch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "SGD momentum learning rate.")
_REG = flags.DEFINE_float("reg", 1e-4, "L2 strength.")
_MU = flags.DEFINE_float("mu", 0.9, "Momentum.")
_SWEEP_CONFIGS = flags.DEFINE_integer("sweep_configs", 32, "sweep: configurations.")
_SWEEP_EPOCHS = flags.DEFINE_integer("sweep_epochs", 3, "sweep: epochs per configuration.")
_SWEEP_TRAIN = flags.DEFINE_integer("sweep_train", 10000, "sweep: training examples.")
_NUM_VAL = flags.DEFINE_integer("num_val", 1000, "sweep: validation examples.")
_MEMBERS = flags.DEFINE_integer("members", 16, "ensemble: linear members.")
_ENSEMBLE_N = flags.DEFINE_integer("ensemble_n", 10000, "ensemble: examples scored.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random data and of the models.")
_PROFILE = flags.DEFINE_bool(
    "profile", False, "Also trace scorelab's calls and report its time per XLA op."
)


# ----------------------------------------------------------------------------- helpers


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
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


def compile_timed(jitted, *args):
    """``(compiled, seconds)``: the executable jax would run for ``args``, and its compile time."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def blas_info() -> list[dict[str, Any]]:
    """What threadpoolctl sees: the BLAS / OpenMP libraries, kernel and thread counts."""
    keep = ("internal_api", "version", "architecture", "num_threads")
    return [{k: info.get(k) for k in keep} for info in threadpoolctl.threadpool_info()]


def device_info() -> str:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    return f"{dev.platform}:{dev.device_kind} x{jax.device_count()} ({cpu})"


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


def _numpy_variants(run: Callable[[str], Any]) -> dict[str, Callable[[], Any]]:
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


def _medians(times: dict[str, list[float]]) -> dict[str, float]:
    out = {name: float(np.median(t)) for name, t in times.items()}
    numpy_names = [n for n in out if n.startswith("numpy_")]
    if numpy_names:  # the baseline: the fastest numpy variant
        out["numpy"] = min(out[n] for n in numpy_names)
    return out


# ----------------------------------------------------------------------------- workloads


def _epoch_inputs(**model):
    """What an epoch workload times: ``(n, setup, hparams, dataset, device data, fresh)``;
    ``fresh()`` is a new initial state. The setup is SGD momentum, 2 epochs, with ``model``'s
    fields; the data CIFAR-like pixels, kept on the device as train_and_evaluate keeps them."""
    n, d, k = _NUM_TRAIN.value, _NUM_FEATURES.value, _NUM_CLASSES.value
    setup = settings.Setup(
        d,
        k,
        optimizer="momentum",
        num_epochs=2,
        batch_size=_BATCH_SIZE.value,
        train_eval_size=min(1000, n),
        **model,
    )
    hp = settings.float32_hparams(
        {"learning_rate": _LEARNING_RATE.value, "reg": _REG.value, "mu": _MU.value}
    )
    ds = pixel_dataset(n, max(1, n // 49), d, k, _SEED.value)
    key = jax.random.key(_SEED.value)
    return n, setup, hp, ds, train.to_device(ds), lambda: train.init_state(key, hp, setup, n)


def bench_train(repeats: int) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    """One epoch of SGD momentum on CIFAR-like pixels: scorelab's jitted epoch vs the numpy
    trainer (which reads the preprocessed float32 rows, as the course's code does).

    ``scorelab`` is the epoch as ``train_and_evaluate`` runs it (training, then the epoch's
    train and val accuracies), on the data as it keeps them (uint8 pixels, made float32
    after each minibatch gather); ``scorelab_float32_rows`` the same on the float32 rows;
    ``scorelab_one_block`` the same without row blocks (``row_blocks=1``, see
    ``train.ROW_BLOCKS``); ``scorelab_train_epoch`` the training pass alone.
    """
    n, setup, hp, ds, dataset, fresh = _epoch_inputs(loss="softmax")
    lr, reg, mu = _LEARNING_RATE.value, _REG.value, _MU.value
    x_np, y_np = ds.x_train, ds.y_train  # the float32 rows the numpy trainer reads
    floats = dataset._replace(x_train=jax.device_put(x_np))  # the same rows, as float32

    # As experiments.train runs them: one jitted, donating call per epoch.
    jit_train = jax.jit(functools.partial(train.train_epoch, setup=setup), donate_argnums=0)
    jit_run = jax.jit(functools.partial(train.run_epoch, setup=setup), donate_argnums=0)
    train_epoch, c_train = compile_timed(jit_train, fresh(), hp, dataset.x_train, dataset.y_train)
    run_epoch, c_run = compile_timed(jit_run, fresh(), hp, dataset)
    run_float, c_float = compile_timed(jit_run, fresh(), hp, floats)
    jit_one_block = jax.jit(
        functools.partial(train.run_epoch, setup=setup, row_blocks=1), donate_argnums=0
    )
    run_one_block, c_one_block = compile_timed(jit_one_block, fresh(), hp, dataset)

    # The same computation twice: 2 epochs from the same init, same minibatches.
    init = fresh()
    w0, b0 = np.asarray(init.params["W"]), np.asarray(init.params["b"])
    batches = [epoch_batches(init, n, setup, e) for e in range(2)]
    state = fresh()
    for _ in range(2):
        state, metrics = train_epoch(state, hp, dataset.x_train, dataset.y_train)
    check = {"scorelab": float(metrics["train_loss"])}
    w_sl = np.asarray(state.params["W"])
    for layout in numpy_trainer.LAYOUTS:
        model = numpy_trainer.init(w0, b0, layout)
        for b in batches:
            loss = numpy_trainer.train_epoch(model, x_np, y_np, b, lr, reg, mu)
        check[f"numpy_{layout.lower()}"] = loss
        check[f"max_abs_dW_numpy_{layout.lower()}"] = float(
            np.max(np.abs(numpy_trainer.weights_kd(model) - w_sl))
        )

    states = {"train": fresh(), "run": fresh(), "float": fresh(), "one_block": fresh()}
    models = {lay: numpy_trainer.init(w0, b0, lay) for lay in numpy_trainer.LAYOUTS}
    rng = np.random.default_rng(_SEED.value)
    steps = train.steps_per_epoch(setup, n)

    def sl(which, fn, *args):
        def go():
            states[which], m = fn(states[which], hp, *args)
            jax.block_until_ready(m)

        return go

    def numpy_epoch(layout):  # the numpy loop shuffles on the host, as the course's does
        b = rng.permutation(n)[: steps * setup.batch_size].reshape(steps, setup.batch_size)
        return numpy_trainer.train_epoch(models[layout], x_np, y_np, b, lr, reg, mu)

    fns = {  # scorelab: the epoch as experiments.train runs it (training + its accuracies)
        "scorelab": sl("run", run_epoch, dataset),
        "scorelab_train_epoch": sl("train", train_epoch, dataset.x_train, dataset.y_train),
        "scorelab_float32_rows": sl("float", run_float, floats),
        "scorelab_one_block": sl("one_block", run_one_block, dataset),
        **_numpy_variants(numpy_epoch),
    }
    times, cold = interleaved(fns, repeats)
    seconds, cold_seconds = _medians(times), _medians(cold)
    return {
        "shapes": {
            "num_train": n,
            "num_features": setup.num_features,
            "num_classes": setup.num_classes,
            "batch_size": setup.batch_size,
            "steps_per_epoch": steps,
        },
        "seconds": seconds,
        "min_seconds": {m: float(min(t)) for m, t in times.items()},
        "cold_seconds": cold_seconds,
        "compile_seconds": {
            "scorelab": c_run,
            "scorelab_train_epoch": c_train,
            "scorelab_float32_rows": c_float,
            "scorelab_one_block": c_one_block,
        },
        "loss_after_2_epochs": check,
        "scorelab_over_numpy": seconds["scorelab"] / seconds["numpy"],
        "cold_scorelab_over_numpy": cold_seconds["scorelab"] / cold_seconds["numpy"],
    }, fns


def bench_two_layer(repeats: int) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    """One epoch of SGD momentum for the two-layer ReLU net (``hidden`` units) on CIFAR-like
    pixels: scorelab's jitted epoch as ``train_and_evaluate`` runs it (training, then the
    epoch's train and val accuracies) vs the course's ``TwoLayerNet`` loss in a numpy loop
    (`numpy_trainer.train_epoch_two_layer`, the training pass alone). Its ``seconds["numpy"]``
    is the numpy time per configuration-epoch of a two-layer sweep."""
    n, setup, hp, ds, dataset, fresh = _epoch_inputs(model="two_layer", hidden=_HIDDEN.value)
    lr, reg, mu = _LEARNING_RATE.value, _REG.value, _MU.value
    x_np, y_np = ds.x_train, ds.y_train
    jit_run = jax.jit(functools.partial(train.run_epoch, setup=setup), donate_argnums=0)
    run_epoch, compile_seconds = compile_timed(jit_run, fresh(), hp, dataset)

    # The same computation twice: 2 epochs from the same init, same minibatches.
    init = fresh()
    batches = [epoch_batches(init, n, setup, e) for e in range(2)]
    init_params = jax.device_get(init.params)  # (run_epoch donates the state's buffers)
    net = numpy_trainer.init_two_layer(init_params)
    for b in batches:
        numpy_loss = numpy_trainer.train_epoch_two_layer(net, x_np, y_np, b, lr, reg, mu)
    state = init
    for _ in range(2):
        state, m = run_epoch(state, hp, dataset)
    check = {
        "scorelab": float(m["train_loss"]),
        "numpy": numpy_loss,
        "max_abs_dW1": float(np.max(np.abs(net.params["W1"].T - np.asarray(state.params["W1"])))),
    }

    box = {"state": fresh(), "net": numpy_trainer.init_two_layer(init_params)}
    rng = np.random.default_rng(_SEED.value)
    steps = train.steps_per_epoch(setup, n)

    def scorelab():
        box["state"], m = run_epoch(box["state"], hp, dataset)
        jax.block_until_ready(m)

    def numpy_epoch(threads):
        b = rng.permutation(n)[: steps * setup.batch_size].reshape(steps, setup.batch_size)
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            numpy_trainer.train_epoch_two_layer(box["net"], x_np, y_np, b, lr, reg, mu)

    fns = {
        "scorelab": scorelab,
        "numpy_default_threads": lambda: numpy_epoch(None),
        "numpy_1thread": lambda: numpy_epoch(1),
    }
    times, cold = interleaved(fns, repeats)
    seconds, cold_seconds = _medians(times), _medians(cold)
    return {
        "shapes": {
            "num_train": n,
            "num_features": setup.num_features,
            "hidden": setup.hidden,
            "num_classes": setup.num_classes,
            "batch_size": setup.batch_size,
            "steps_per_epoch": steps,
        },
        "seconds": seconds,
        "cold_seconds": cold_seconds,
        "compile_seconds": {"scorelab": compile_seconds},
        "loss_after_2_epochs": check,
        "scorelab_over_numpy": seconds["scorelab"] / seconds["numpy"],
    }, fns


def bench_sweep(repeats: int) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
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
    m, n, d, k = _SWEEP_CONFIGS.value, _SWEEP_TRAIN.value, _NUM_FEATURES.value, _NUM_CLASSES.value
    setup = settings.Setup(
        d,
        k,
        optimizer="momentum",
        num_epochs=_SWEEP_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        train_eval_size=min(1000, n),
    )
    ds = pixel_dataset(n, _NUM_VAL.value, d, k, _SEED.value)
    x_np, y_np, xv_np, yv_np = ds.x_train, ds.y_train, ds.x_val, ds.y_val
    mesh = sharding.trial_mesh()
    dataset = sharding.replicate(train.to_device(ds), mesh)  # as lib.search does
    rng = np.random.default_rng(_SEED.value)
    lrs = 10.0 ** rng.uniform(-4, -2, m)
    regs = 10.0 ** rng.uniform(-5, -2, m)
    rows = [
        {"learning_rate": float(lr), "reg": float(reg), "mu": _MU.value}
        for lr, reg in zip(lrs, regs)
    ]
    seeds = [_SEED.value + i for i in range(m)]

    def fit(order_seed):
        return lambda: sharding.fit_trials(seeds, rows, dataset, setup, mesh, order_seed=order_seed)

    scorelab, own_order = fit(_SEED.value), fit(None)
    compile_seconds = {}
    for name, fn in (("scorelab", scorelab), ("scorelab_own_order", own_order)):
        t0 = time.perf_counter()
        fn()  # fit_trials returns host arrays: the call has finished
        compile_seconds[name] = time.perf_counter() - t0
    steps = train.steps_per_epoch(setup, n)
    w_init = np.asarray(train.init_params(jax.random.key(0), setup)["W"])

    def numpy_loop(layout):
        best = 0.0
        for i in range(m):
            model = numpy_trainer.init(w_init, np.zeros(k), layout)
            for _ in range(setup.num_epochs):
                b = rng.permutation(n)[: steps * setup.batch_size].reshape(steps, -1)
                numpy_trainer.train_epoch(model, x_np, y_np, b, lrs[i], regs[i], _MU.value)
                numpy_trainer.accuracy(
                    model, x_np[: setup.train_eval_size], y_np[: setup.train_eval_size]
                )
                best = max(best, numpy_trainer.accuracy(model, xv_np, yv_np))
        return best

    # The floor: the sweep's products (forward and dW per step, the accuracies' forward
    # passes per epoch) at the float32 rate of a large square product on this device.
    side = 2048
    square = jax.device_put(np.ones((side, side), np.float32))
    peak_product = jax.jit(lambda a: jnp.matmul(a, a, precision=scores.PRECISION))
    fns = {
        "scorelab": scorelab,
        "scorelab_own_order": own_order,
        f"matmul_{side}": lambda: jax.block_until_ready(peak_product(square)),
        **_numpy_variants(numpy_loop),
    }
    times, cold = interleaved(fns, repeats)
    seconds = _medians(times)
    eval_rows = setup.train_eval_size + _NUM_VAL.value
    flop = 2 * d * k * m * setup.num_epochs * (2 * steps * setup.batch_size + eval_rows)
    peak = 2 * side**3 / seconds[f"matmul_{side}"]
    return {
        "shapes": {
            "configs": m,
            "epochs": setup.num_epochs,
            "num_train": n,
            "num_val": _NUM_VAL.value,
            "num_features": setup.num_features,
            "num_classes": setup.num_classes,
            "batch_size": setup.batch_size,
            "devices": mesh.size,
        },
        "seconds": seconds,
        "min_seconds": {k_: float(min(t)) for k_, t in times.items()},
        "cold_seconds": _medians(cold),
        "compile_seconds": compile_seconds,
        "numpy_over_scorelab": seconds["numpy"] / seconds["scorelab"],
        "products_gflop": flop / 1e9,
        "peak_gflops": peak / 1e9,
        "floor_seconds": flop / peak,
        "numpy_over_floor": seconds["numpy"] * peak / flop,
    }, fns


def bench_ensemble(repeats: int) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
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
    m, n, d, k = _MEMBERS.value, _ENSEMBLE_N.value, _NUM_FEATURES.value, _NUM_CLASSES.value
    x_np, _ = random_data(n, d, k, _SEED.value)
    rng = np.random.default_rng(_SEED.value + 1)
    params_np = {
        "W": 1e-3 * rng.standard_normal((m, k, d), dtype=np.float32),
        "b": 1e-3 * rng.standard_normal((m, k), dtype=np.float32),
    }
    x, params = jax.device_put(x_np), jax.device_put(params_np)
    group = members.Group(settings.Setup(d, k), params, tuple(f"member {i}" for i in range(m)))

    # The floor: one (N, D) x (D, M*K) product, nothing else, at scorelab's precision.
    def wide_matmul(p, x):
        w = p["W"].reshape(m * k, d)
        return jnp.matmul(x, w.T, precision=scores.PRECISION) + p["b"].reshape(m * k)

    def wide_matmul_wx(p, x):  # the same product, oriented (M*K, D) x (D, N)
        w = p["W"].reshape(m * k, d)
        wide = jax.lax.dot_general(w, x, (((1,), (1,)), ((), ())), precision=scores.PRECISION)
        return wide + p["b"].reshape(m * k, 1)

    t0 = time.perf_counter()
    got = ensemble.stacked_scores([group], x)  # compiles its program: the first call
    c_scorelab = time.perf_counter() - t0
    vmapped, c_vmap = compile_timed(
        jax.jit(functools.partial(ensemble.member_scores, model="linear")), params, x
    )
    wide, c_wide = compile_timed(jax.jit(ensemble.member_scores_linear_wide), params, x)
    floor, c_floor = compile_timed(jax.jit(wide_matmul), params, x)
    floor_wx, c_floor_wx = compile_timed(jax.jit(wide_matmul_wx), params, x)
    want = np.einsum("nd,mkd->mnk", x_np, params_np["W"]) + params_np["b"][:, None, :]
    error = max(float(np.max(np.abs(a - want))) for a in (got, np.asarray(vmapped(params, x))))

    w_dk = [np.ascontiguousarray(w.T) for w in params_np["W"]]  # the course's (D, K)

    def numpy_loop(layout):
        if layout == "DK":
            return [x_np.dot(w) + b for w, b in zip(w_dk, params_np["b"])]
        return [x_np.dot(w.T) + b for w, b in zip(params_np["W"], params_np["b"])]

    fns = {
        "scorelab": lambda: ensemble.stacked_scores([group], x),  # returns host arrays
        "scorelab_wide": lambda: jax.block_until_ready(wide(params, x)),
        "scorelab_vmap": lambda: jax.block_until_ready(vmapped(params, x)),
        "wide_matmul": lambda: jax.block_until_ready(floor(params, x)),
        "wide_matmul_wx": lambda: jax.block_until_ready(floor_wx(params, x)),
        **_numpy_variants(numpy_loop),
    }
    times, cold = interleaved(fns, repeats)
    seconds = _medians(times)
    return {
        "shapes": {"members": m, "num_examples": n, "num_features": d, "num_classes": k},
        "seconds": seconds,
        "min_seconds": {k_: float(min(t)) for k_, t in times.items()},
        "cold_seconds": _medians(cold),
        "compile_seconds": {
            "scorelab": c_scorelab,
            "scorelab_wide": c_wide,
            "scorelab_vmap": c_vmap,
            "wide_matmul": c_floor,
            "wide_matmul_wx": c_floor_wx,
        },
        "max_abs_error": error,
        "scorelab_over_wide_matmul": seconds["scorelab"]
        / min(seconds["wide_matmul"], seconds["wide_matmul_wx"]),
    }, fns


def _numpy_numerical_grad(loss_fn, params: dict[str, np.ndarray], h: float = 1e-5):
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


def bench_gradcheck(repeats: int) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    """A full float64 finite-difference check of the digits linear softmax model
    (``gradcheck.full_check``: every coordinate, against jax.grad and lib.backprop) vs the
    course's numpy loop over the coordinates."""
    from lib import gradcheck, scores  # noqa: PLC0415

    ds = data.load("digits")
    x, y, reg = ds.x_train.astype(np.float64), ds.y_train, 1e-3
    obj = gradcheck.make_objective("linear", "softmax", x, y, reg)  # one loss fn: one compile
    with jax.enable_x64(True):
        params = scores.init_linear(
            jax.random.key(_SEED.value), ds.num_features, ds.num_classes, dtype=jnp.float64
        )

    def scorelab_check():
        return gradcheck.full_check(obj.loss, obj.grad_fns, params)

    t0 = time.perf_counter()
    reports = scorelab_check()
    first = time.perf_counter() - t0
    num_params = sum(int(np.size(v)) for v in jax.tree.leaves(params))
    params_np = {k_: np.array(v) for k_, v in params.items()}

    def np_loss(p):
        s = x @ p["W"].T + p["b"]
        s = s - s.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(s).sum(axis=1))
        return np.mean(log_z - s[np.arange(len(y)), y]) + reg * np.sum(p["W"] ** 2)

    fns = {
        "scorelab": scorelab_check,
        "numpy_loop": lambda: _numpy_numerical_grad(np_loss, params_np),
    }
    times, cold = interleaved(fns, repeats)
    seconds = {name: float(np.median(t)) for name, t in times.items()}
    cold_seconds = {name: float(np.median(t)) for name, t in cold.items()}
    return {
        "shapes": {
            "num_params": num_params,
            "num_examples": int(len(y)),
            "num_features": ds.num_features,
            "num_classes": ds.num_classes,
        },
        "seconds": seconds,
        "min_seconds": {k_: float(min(t)) for k_, t in times.items()},
        "cold_seconds": cold_seconds,
        "compile_seconds": {"scorelab": first - seconds["scorelab"]},
        "grades": {r.name: r.grade for r in reports},
    }, fns


BENCHES = {
    "train": bench_train,
    "two_layer": bench_two_layer,
    "sweep": bench_sweep,
    "ensemble": bench_ensemble,
    "gradcheck": bench_gradcheck,
}


def run(workload: str, repeats: int, profile: bool = False) -> dict[str, Any]:
    """Runs one workload; returns the JSON-ready result dict (with ``profile`` if asked)."""
    if workload not in BENCHES:
        raise ValueError(f"unknown workload {workload!r}; valid: {', '.join(WORKLOADS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    result, fns = BENCHES[workload](repeats)
    if profile:
        result["profile"] = profile_ops(fns["scorelab"])
    return {
        "workload": workload,
        **result,
        "device": device_info(),
        "blas": blas_info(),
        "repeats": repeats,
    }


def format_table(result: dict[str, Any]) -> str:
    """The per-implementation medians as an aligned text table, fastest first."""
    secs, cold = result["seconds"], result.get("cold_seconds", {})
    lines = [f"{result['workload']}: {result['shapes']}  on {result['device']}"]
    lines.append(f"  {'':24s} {'warm':>9s}   {'cold':>9s}")
    for name, s in sorted(secs.items(), key=lambda kv: kv[1]):
        compile_s = result.get("compile_seconds", {}).get(name)
        extra = f"  (compile {compile_s:.2f} s)" if compile_s is not None else ""
        c = f"{cold[name]:9.4f} s" if name in cold else ""
        lines.append(f"  {name:24s} {s:9.4f} s {c:>11s}{extra}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    result = run(_WORKLOAD.value, _REPEATS.value, _PROFILE.value)
    print(format_table(result))
    for key in (
        "loss_after_2_epochs",
        "scorelab_over_numpy",
        "cold_scorelab_over_numpy",
        "numpy_over_scorelab",
        "products_gflop",
        "peak_gflops",
        "floor_seconds",
        "numpy_over_floor",
        "scorelab_over_wide_matmul",
        "max_abs_error",
        "grades",
    ):
        if key in result:
            print(f"  {key}: {result[key]}")
    print(f"  blas: {result['blas']}")
    if "profile" in result:
        print("  scorelab per call, by XLA op (thread time; ops on different cores overlap):")
        for row in result["profile"]:
            print(f"    {row['ms']:8.2f} ms  x{row['count']:<6g} {row['op']}")
    if _JSON.value:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
