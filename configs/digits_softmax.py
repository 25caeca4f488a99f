r"""Linear softmax classifier on scikit-learn's bundled 8x8 digits (the default job).

  python -m experiments.train --config=configs/digits_softmax.py --workdir=runs/digits

Reaches test accuracy ~0.96 in a few seconds on 2 CPU cores (see README).
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "digits"
    c.dataset.scale = 1.0 / 16.0  # digits pixels are 0..16
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.loss.reg = 1e-3
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.05
    c.train.num_epochs = 30
    c.train.batch_size = 50
    return c
