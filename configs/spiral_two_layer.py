r"""Two-layer ReLU net (100 hidden units) on the notes' 2-D three-class spiral.

  python -m experiments.train --config=configs/spiral_two_layer.py --workdir=runs/spiral_two_layer

The notes' network reaches about 98% of the training points; see README for the measured figure.
"""

from configs import spiral_softmax


def get_config():
    c = spiral_softmax.get_config()
    c.model.name = "two_layer"
    c.model.hidden = 100
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.3
    c.train.num_epochs = 100
    c.train.batch_size = 50
    return c
