r"""Trains one model and writes its workdir.

  python -m experiments.train --config=configs/digits_softmax.py --workdir=runs/digits \
      [--config.optimizer.learning_rate=1e-2 ...]

Running the same command again resumes from the workdir's last checkpoint.
"""

from absl import app, flags

from lib import cli, train

_CONFIG = cli.define_config("configs/digits_softmax.py", "Training config file.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for checkpoints, metrics, figures.", required=True
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
