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

import json

from absl import app, flags

from experiments import benchmarks

_D = benchmarks.Options()  # the defaults

_WORKLOAD = flags.DEFINE_enum("workload", "train", benchmarks.WORKLOADS, "What to time.")
_JSON = flags.DEFINE_bool("json", False, "End with one JSON line of the results.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds (after one warm-up round).")
_OPTIONS = {  # benchmarks.Options field -> its flag
    "num_train": flags.DEFINE_integer("num_train", _D.num_train, "train: training examples."),
    "num_features": flags.DEFINE_integer(
        "num_features", _D.num_features, "Features D (CIFAR-10: 3072)."
    ),
    "num_classes": flags.DEFINE_integer("num_classes", _D.num_classes, "Classes K."),
    "hidden": flags.DEFINE_integer("hidden", _D.hidden, "two_layer: hidden units H."),
    "batch_size": flags.DEFINE_integer("batch_size", _D.batch_size, "Minibatch size."),
    "learning_rate": flags.DEFINE_float(
        "learning_rate", _D.learning_rate, "SGD momentum learning rate."
    ),
    "reg": flags.DEFINE_float("reg", _D.reg, "L2 strength."),
    "mu": flags.DEFINE_float("mu", _D.mu, "Momentum."),
    "sweep_configs": flags.DEFINE_integer(
        "sweep_configs", _D.sweep_configs, "sweep: configurations."
    ),
    "sweep_epochs": flags.DEFINE_integer(
        "sweep_epochs", _D.sweep_epochs, "sweep: epochs per configuration."
    ),
    "sweep_train": flags.DEFINE_integer("sweep_train", _D.sweep_train, "sweep: training examples."),
    "num_val": flags.DEFINE_integer("num_val", _D.num_val, "sweep: validation examples."),
    "members": flags.DEFINE_integer("members", _D.members, "ensemble: linear members."),
    "ensemble_n": flags.DEFINE_integer("ensemble_n", _D.ensemble_n, "ensemble: examples scored."),
    "seed": flags.DEFINE_integer("seed", _D.seed, "Seed of the random data and of the models."),
}
_PROFILE = flags.DEFINE_bool(
    "profile", False, "Also trace scorelab's calls and report its time per XLA op."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    options = benchmarks.Options(**{name: flag.value for name, flag in _OPTIONS.items()})
    result = benchmarks.run(_WORKLOAD.value, _REPEATS.value, _PROFILE.value, options)
    print(benchmarks.format_report(result))
    if _JSON.value:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
