r"""Linear softmax classifier on CIFAR-10 (the notes' tuned linear softmax).

  python -m experiments.train --config=configs/cifar10_softmax.py \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py --workdir=runs/cifar10_softmax

The data folder is the "CIFAR-10 python version" from https://www.cs.toronto.edu/~kriz/cifar.html
(data_batch_1..5, test_batch, batches.meta). Split as in the notes: 49000 train / 1000 val.

Pixels are centred on the training mean and divided by 255; the notes' tuned values for raw
pixels (SGD, learning rate 1e-7, reg 2.5e4, 1500 steps of 200) map exactly to learning rate
1e-7 * 255**2 = 6.5e-3 and reg 2.5e4 / 255**2 = 0.38 at this scale. The notes report about
0.38-0.40 validation accuracy for this setting; CIFAR-10 is not on the development machine, so
that figure is the notes', not a run of this file.
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "cifar10"
    c.dataset.scale = 1.0 / 255.0
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.loss.reg = 2.4e-6
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 1.3e-2
    c.schedule.name = "step"  # halve the learning rate every 5 epochs
    c.schedule.decay = 0.5
    c.schedule.every = 5
    c.train.num_epochs = 20
    c.train.batch_size = 200
    return c
