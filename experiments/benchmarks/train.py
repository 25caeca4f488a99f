"""The epoch workloads: one epoch of SGD momentum on CIFAR-like pixels, scorelab's jitted
epoch against the numpy trainer, for the linear softmax model (`bench_train`) and the
two-layer net (`bench_two_layer`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import threadpoolctl

from experiments.benchmarks import numpy_trainer, timing
from experiments.benchmarks.options import Options
from lib import data, scores, settings, train

EPOCHS = 2  # the check: this many epochs from the same init, on the same minibatches


class EpochInputs(NamedTuple):
    """What an epoch workload times. ``fresh()`` is a new initial state (the same each call)."""

    n: int
    setup: settings.Setup
    hp: Any
    ds: data.Dataset  # the host data; ds.x_train: the preprocessed float32 rows numpy reads
    dataset: train.Data  # the same on the device, as train_and_evaluate keeps them
    fresh: Callable[[], train.TrainState]


def epoch_inputs(opts: Options, **model) -> EpochInputs:
    """SGD momentum, `EPOCHS` epochs, with ``model``'s fields, on CIFAR-like pixels (`EpochInputs`)."""
    n, d, k = opts.num_train, opts.num_features, opts.num_classes
    setup = settings.Setup(
        d,
        k,
        optimizer="momentum",
        num_epochs=EPOCHS,
        batch_size=opts.batch_size,
        train_eval_size=min(1000, n),
        **model,
    )
    hp = settings.float32_hparams(
        {"learning_rate": opts.learning_rate, "reg": opts.reg, "mu": opts.mu}
    )
    ds = timing.pixel_dataset(n, max(1, n // 49), d, k, opts.seed)
    key = jax.random.key(opts.seed)
    return EpochInputs(
        n, setup, hp, ds, train.to_device(ds), lambda: train.init_state(key, hp, setup, n)
    )


def epoch_shapes(inp: EpochInputs) -> dict[str, int]:
    setup = inp.setup
    shapes = {"num_train": inp.n, "num_features": setup.num_features}
    for name in scores.model(setup.model).sizes:  # e.g. a two-layer net's hidden
        shapes[name] = getattr(setup, name)
    return shapes | {
        "num_classes": setup.num_classes,
        "batch_size": setup.batch_size,
        "steps_per_epoch": train.steps_per_epoch(setup, inp.n),
    }


def _jit_epoch(epoch_fn, setup: settings.Setup, **kwargs):
    """As experiments.train runs an epoch: one jitted call that donates the state."""
    return jax.jit(functools.partial(epoch_fn, setup=setup, **kwargs), donate_argnums=0)


def _scorelab_epochs(epoch, state, hp, *args) -> tuple[train.TrainState, float]:
    """`EPOCHS` epochs of the compiled ``epoch`` from ``state``: (final state, last loss)."""
    for _ in range(EPOCHS):
        state, metrics = epoch(state, hp, *args)
    return state, float(metrics["train_loss"])


def _numpy_epochs(train_fn, model, inp: EpochInputs, opts: Options) -> float:
    """The numpy trainer's ``train_fn`` over scorelab's minibatches of the first `EPOCHS`
    epochs, from ``model`` (updated in place); the last epoch's loss."""
    init = inp.fresh()
    for e in range(EPOCHS):
        b = timing.epoch_batches(init, inp.n, inp.setup, e)
        loss = train_fn(model, inp.ds.x_train, inp.ds.y_train, b, *_sgd(opts))
    return loss


def _sgd(opts: Options) -> tuple[float, float, float]:
    return opts.learning_rate, opts.reg, opts.mu


def _timed_epoch(epoch, state, hp, *args) -> Callable[[], None]:
    """A timed call: one epoch of the compiled ``epoch``, each from the last one's state."""
    box = [state]

    def go():
        box[0], metrics = epoch(box[0], hp, *args)
        jax.block_until_ready(metrics)

    return go


def _host_epoch(train_fn, inp: EpochInputs, opts: Options) -> Callable[[Any], float]:
    """``epoch(model)``: one epoch of the numpy trainer's ``train_fn``; the numpy loop
    shuffles on the host, as the course's does."""
    rng = np.random.default_rng(opts.seed)
    steps = train.steps_per_epoch(inp.setup, inp.n)

    def epoch(model):
        b = timing.host_batches(rng, inp.n, steps, inp.setup.batch_size)
        return train_fn(model, inp.ds.x_train, inp.ds.y_train, b, *_sgd(opts))

    return epoch


# ----------------------------------------------------------------------------- train


def _compile_linear_epochs(inp: EpochInputs, floats: train.Data):
    """scorelab's four epochs, compiled: name -> (executable, its data arguments), and
    name -> compile seconds."""
    jit_run = _jit_epoch(train.run_epoch, inp.setup)
    calls = {
        "scorelab_train_epoch": (
            _jit_epoch(train.train_epoch, inp.setup),
            (inp.dataset.x_train, inp.dataset.y_train),
        ),
        "scorelab": (jit_run, (inp.dataset,)),
        "scorelab_float32_rows": (jit_run, (floats,)),
        "scorelab_one_block": (
            _jit_epoch(train.run_epoch, inp.setup, row_blocks=1),
            (inp.dataset,),
        ),
    }
    epochs, seconds = {}, {}
    for name, (jitted, args) in calls.items():
        compiled, seconds[name] = timing.compile_timed(jitted, inp.fresh(), inp.hp, *args)
        epochs[name] = (compiled, args)
    return epochs, seconds


def _linear_check(inp: EpochInputs, opts: Options, train_epoch, w0, b0) -> dict[str, float]:
    """The same computation twice: 2 epochs from the same init (``w0``, ``b0``), same
    minibatches."""
    args = (inp.dataset.x_train, inp.dataset.y_train)
    state, loss = _scorelab_epochs(train_epoch, inp.fresh(), inp.hp, *args)
    check = {"scorelab": loss}
    w_sl = np.asarray(state.params["W"])
    for layout in numpy_trainer.LAYOUTS:
        model = numpy_trainer.init(w0, b0, layout)
        check[f"numpy_{layout.lower()}"] = _numpy_epochs(
            numpy_trainer.train_epoch, model, inp, opts
        )
        check[f"max_abs_dW_numpy_{layout.lower()}"] = float(
            np.max(np.abs(numpy_trainer.weights_kd(model) - w_sl))
        )
    return check


def bench_train(opts: Options, repeats: int) -> tuple[dict[str, Any], timing.Fns]:
    """One epoch of SGD momentum on CIFAR-like pixels: scorelab's jitted epoch vs the numpy
    trainer (which reads the preprocessed float32 rows, as the course's code does).

    ``scorelab`` is the epoch as ``train_and_evaluate`` runs it (training, then the epoch's
    train and val accuracies), on the data as it keeps them (uint8 pixels, made float32
    after each minibatch gather); ``scorelab_float32_rows`` the same on the float32 rows;
    ``scorelab_one_block`` the same without row blocks (``row_blocks=1``, see
    ``train.ROW_BLOCKS``); ``scorelab_train_epoch`` the training pass alone.
    """
    inp = epoch_inputs(opts, loss="softmax")
    floats = inp.dataset._replace(x_train=jax.device_put(inp.ds.x_train))  # as float32
    epochs, compile_seconds = _compile_linear_epochs(inp, floats)
    init = inp.fresh()
    w0, b0 = np.asarray(init.params["W"]), np.asarray(init.params["b"])
    check = _linear_check(inp, opts, epochs["scorelab_train_epoch"][0], w0, b0)

    models = {lay: numpy_trainer.init(w0, b0, lay) for lay in numpy_trainer.LAYOUTS}
    numpy_epoch = _host_epoch(numpy_trainer.train_epoch, inp, opts)
    # scorelab: the epoch as experiments.train runs it (training + its accuracies)
    names = ("scorelab", "scorelab_train_epoch", "scorelab_float32_rows", "scorelab_one_block")
    fns = {}
    for name in names:
        compiled, args = epochs[name]
        fns[name] = _timed_epoch(compiled, inp.fresh(), inp.hp, *args)
    fns |= timing.numpy_variants(lambda layout: numpy_epoch(models[layout]))
    rounds = timing.time_rounds(fns, repeats)
    seconds, cold_seconds = rounds["seconds"], rounds["cold_seconds"]
    return {
        "shapes": epoch_shapes(inp),
        **rounds,
        "compile_seconds": compile_seconds,
        "loss_after_2_epochs": check,
        "scorelab_over_numpy": seconds["scorelab"] / seconds["numpy"],
        "cold_scorelab_over_numpy": cold_seconds["scorelab"] / cold_seconds["numpy"],
    }, fns


# ----------------------------------------------------------------------------- two_layer


def bench_two_layer(opts: Options, repeats: int) -> tuple[dict[str, Any], timing.Fns]:
    """One epoch of SGD momentum for the two-layer ReLU net (``hidden`` units) on CIFAR-like
    pixels: scorelab's jitted epoch as ``train_and_evaluate`` runs it (training, then the
    epoch's train and val accuracies) vs the course's ``TwoLayerNet`` loss in a numpy loop
    (`numpy_trainer.train_epoch_two_layer`, the training pass alone). Its ``seconds["numpy"]``
    is the numpy time per configuration-epoch of a two-layer sweep."""
    inp = epoch_inputs(opts, model="two_layer", hidden=opts.hidden)
    jit_run = _jit_epoch(train.run_epoch, inp.setup)
    run_epoch, compile_seconds = timing.compile_timed(jit_run, inp.fresh(), inp.hp, inp.dataset)

    # The same computation twice: 2 epochs from the same init, same minibatches.
    init_params = jax.device_get(inp.fresh().params)  # (run_epoch donates the state's buffers)
    net = numpy_trainer.init_two_layer(init_params)
    numpy_loss = _numpy_epochs(numpy_trainer.train_epoch_two_layer, net, inp, opts)
    state, loss = _scorelab_epochs(run_epoch, inp.fresh(), inp.hp, inp.dataset)
    dW1 = net.params["W1"].T - np.asarray(state.params["W1"])
    check = {"scorelab": loss, "numpy": numpy_loss, "max_abs_dW1": float(np.max(np.abs(dW1)))}

    timed_net = numpy_trainer.init_two_layer(init_params)
    numpy_epoch = _host_epoch(numpy_trainer.train_epoch_two_layer, inp, opts)

    def numpy_threads(threads):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            numpy_epoch(timed_net)

    fns = {
        "scorelab": _timed_epoch(run_epoch, inp.fresh(), inp.hp, inp.dataset),
        "numpy_default_threads": lambda: numpy_threads(None),
        "numpy_1thread": lambda: numpy_threads(1),
    }
    rounds = timing.time_rounds(fns, repeats)  # (no min_seconds in this workload's result)
    return {
        "shapes": epoch_shapes(inp),
        "seconds": rounds["seconds"],
        "cold_seconds": rounds["cold_seconds"],
        "compile_seconds": {"scorelab": compile_seconds},
        "loss_after_2_epochs": check,
        "scorelab_over_numpy": rounds["seconds"]["scorelab"] / rounds["seconds"]["numpy"],
    }, fns
