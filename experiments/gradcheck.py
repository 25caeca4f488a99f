r"""Checks jax.grad and lib.backprop against float64 finite differences.

  python -m experiments.gradcheck --config=configs/digits_softmax.py \
      [--num_examples=100] [--workdir=/tmp/gradcheck]

Prints one table row per (gradient function, parameter leaf) and exits
non-zero if any gradient is graded "wrong". A full check for models with at
most --max_full_params parameters, else a sparse check of --num_checks
coordinates (at least one per leaf).
"""

import os
import sys

from absl import app
from absl import flags

from lib import cli, gradcheck, metrics, settings

_CONFIG = cli.define_config(None, "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "If set, write config.json and summary.json.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 100, "Training examples in the loss.")
_NUM_CHECKS = flags.DEFINE_integer("num_checks", 500, "Coordinates of a sparse check.")
_MAX_FULL = flags.DEFINE_integer("max_full_params", 5000, "Largest model checked fully.")
_H = flags.DEFINE_float("h", gradcheck.DEFAULT_H, "Finite-difference step.")


def main(argv):
    del argv
    config = _CONFIG.value
    if _NUM_EXAMPLES.value < 1:
        raise app.UsageError("--num_examples must be >= 1.")
    ds = settings.load_data(config)
    n = _NUM_EXAMPLES.value
    reports = gradcheck.check_model(
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
    )
    print(gradcheck.format_report(reports))
    if _WORKDIR.value:
        os.makedirs(_WORKDIR.value, exist_ok=True)
        metrics.write_json(os.path.join(_WORKDIR.value, "config.json"), config.to_dict())
        summary = {
            "wrong": gradcheck.any_wrong(reports),
            "reports": {r.name: [l._asdict() for l in r.leaves] for r in reports},
        }
        metrics.write_json(os.path.join(_WORKDIR.value, "summary.json"), summary)
    if gradcheck.any_wrong(reports):
        sys.exit(1)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    cli.run(main, defer_signals=False)
