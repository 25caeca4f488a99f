r"""Hyperparameter search: many trials per jitted program, resumable.

  python -m experiments.sweep --config=configs/digits_sweep.py --workdir=runs/digits_sweep \
      [--config.search.space.learning_rate.high=1e-1 --config.search.stages=64x1,16x5 ...]

Running the same command again resumes the study in the workdir.
"""

from absl import app, flags

from lib import cli, search

_CONFIG = cli.define_config(
    "configs/digits_sweep.py", "Sweep config file (a training config + search)."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for the study, trials and figures.", required=True
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    search.run_search(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
