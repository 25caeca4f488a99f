r"""Linear softmax classifier on MNIST (the four IDX files, gzipped or not).

  python -m experiments.train --config=configs/mnist_softmax.py \
      --config.dataset.data_dir=/path/to/mnist --workdir=runs/mnist_softmax

The folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte (each optionally .gz). A linear softmax classifier reaches about 0.92 test
accuracy on MNIST; not run here (no MNIST on the development machine).

The values are a starting point for ``python -m experiments.tune --config=configs/mnist_softmax.py
--config.dataset.data_dir=...``, which searches them from ranges derived from the data.
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "mnist"
    c.dataset.scale = 1.0 / 255.0
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.loss.reg = 1e-4
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 1e-2
    c.train.num_epochs = 10
    c.train.batch_size = 200
    return c
