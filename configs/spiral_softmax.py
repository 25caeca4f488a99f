r"""Linear softmax classifier on the notes' 2-D three-class spiral (not linearly separable).

  python -m experiments.train --config=configs/spiral_softmax.py --workdir=runs/spiral_softmax

As in the notes ("minimal neural network case study"), a linear classifier gets only about half
of the points right (see README for the measured figure).
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "spiral"
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.loss.reg = 5e-4  # the notes' 0.5 * 1e-3 * sum(W**2)
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1.0
    c.train.num_epochs = 60
    c.train.batch_size = 100
    return c
