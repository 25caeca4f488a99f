r"""Linear multiclass SVM (Weston-Watkins hinge, margin 1) on the bundled 8x8 digits.

  python -m experiments.train --config=configs/digits_svm.py --workdir=runs/digits_svm

Reaches test accuracy ~0.95 in a few seconds on 2 CPU cores (see README).
"""

from configs import digits_softmax


def get_config():
    c = digits_softmax.get_config()
    c.loss.name = "hinge"
    c.loss.reg = 1e-3
    c.optimizer.learning_rate = 0.01
    return c
