r"""The whole job on one training config: search, the best model and an ensemble, resumable.

  python -m experiments.tune --config=configs/digits_softmax.py --workdir=runs/tune \
      [--config.search.stages=64x2,16x8,16x30 --config.ensemble.size=8 ...]

Any training config works: the search space and stages are derived from the data where the
config does not set them. Running the same command again resumes the job.
"""

from absl import app, flags

from configs import tune as tune_config
from lib import cli, tune

_CONFIG = cli.define_config(
    "configs/tune.py",
    "Training config file (its search and ensemble blocks are added where it has none).",
    extend=tune_config.add_blocks,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for the study, members, figures and report.", required=True
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    tune.run_tune(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
