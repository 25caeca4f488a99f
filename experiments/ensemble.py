r"""Builds a model ensemble, evaluates it and writes its workdir.

  python -m experiments.ensemble --config=configs/digits_ensemble.py --workdir=runs/ens \
      [--config.ensemble.source=seeds|search|checkpoints|ema --config.ensemble.size=8 ...]

Writes config.json, summary.json (members, ensemble, gains) and ensemble.png, and prints a
table of member and ensemble accuracies.
"""

from absl import app, flags

from lib import cli, ensemble

_CONFIG = cli.define_config("configs/digits_ensemble.py", "Ensemble config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the summary and figure.", required=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    ensemble.run_ensemble(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
