r"""Checks jax.grad and lib.backprop against float64 finite differences.

  python -m experiments.gradcheck --config=configs/digits_softmax.py \
      [--num_examples=100] [--steps=50] [--fail_on=too_high] [--workdir=/tmp/gradcheck]

Checks at initialisation and again after --steps steps of gradient descent on the same
examples (the notes: with tiny initial weights some problems hide). Prints, for each, one
table row per (gradient function, parameter leaf) and a legend, and exits with status 1
if any leaf is graded worse than --fail_on allows ("too high" by default: the notes'
comfort level; "wrong" to fail only on > 1e-2). A full check for models with at most
--max_full_params parameters, else a sparse check of --num_checks coordinates (at least
one per leaf).
"""

import os
import sys

from absl import app, flags

from lib import cli, gradcheck, metrics, model_check, settings

_CONFIG = cli.define_config(None, "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "If set, write config.json and summary.json.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 100, "Training examples in the loss.")
_NUM_CHECKS = flags.DEFINE_integer("num_checks", 500, "Coordinates of a sparse check.")
_MAX_FULL = flags.DEFINE_integer("max_full_params", 5000, "Largest model checked fully.")
_H = flags.DEFINE_float("h", gradcheck.DEFAULT_H, "Finite-difference step.")
_STEPS = flags.DEFINE_integer(
    "steps", 50, "Gradient-descent steps (the config's learning rate) before the second check."
)
_FAIL_ON = flags.DEFINE_enum(
    "fail_on",
    "too_high",
    ["too_high", "uncomfortable", "wrong"],
    "Exit with status 1 on a leaf graded this or worse.",
)
# The grade just better than each --fail_on choice.
_ALLOWED = {
    "too_high": gradcheck.GOOD,
    "uncomfortable": gradcheck.TOO_HIGH,
    "wrong": gradcheck.UNCOMFORTABLE,
}


def main(argv):
    del argv
    config = _CONFIG.value
    if _NUM_EXAMPLES.value < 1 or _STEPS.value < 0:
        raise app.UsageError("--num_examples must be >= 1 and --steps >= 0.")
    ds = settings.load_data(config)
    n = _NUM_EXAMPLES.value
    lr = float(config.optimizer.learning_rate)
    points = {"at initialisation": 0}
    if _STEPS.value:
        points[f"after {_STEPS.value} steps of gradient descent (learning rate {lr:g})"] = (
            _STEPS.value
        )
    results = {}
    for title, steps in points.items():
        results[title] = model_check.check_model(
            config.model.name,
            config.loss.name,
            ds.x_train[:n],
            ds.y_train[:n],
            config.loss.reg,
            num_classes=ds.num_classes,
            hidden=config.model.get("hidden", 100),
            margin=config.loss.get("margin", 1.0),
            seed=config.seed,
            num_checks=_NUM_CHECKS.value,
            max_full_params=_MAX_FULL.value,
            h=_H.value,
            steps=steps,
            learning_rate=lr,
        )
        print(f"{title}:\n{gradcheck.format_report(results[title])}\n")
    print(gradcheck.LEGEND)
    every = [r for reports in results.values() for r in reports]
    failed = gradcheck.worse_than(every, _ALLOWED[_FAIL_ON.value])
    if _WORKDIR.value:
        os.makedirs(_WORKDIR.value, exist_ok=True)
        metrics.write_json(os.path.join(_WORKDIR.value, "config.json"), config.to_dict())
        summary = {
            "wrong": gradcheck.any_wrong(every),
            "failed": failed,
            "checks": {
                title: {r.name: [l._asdict() for l in r.leaves] for r in reports}
                for title, reports in results.items()
            },
        }
        metrics.write_json(os.path.join(_WORKDIR.value, "summary.json"), summary)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    cli.run(main, defer_signals=False)
