r"""Two-layer ReLU net on your own arrays, saved as one .npz file (as configs/npz_softmax.py).

  python -m experiments.tune --config=configs/npz_two_layer.py \
      --config.dataset.data_dir=my_data.npz --workdir=runs/my_data_two_layer

Features are centred and put on one scale (``dataset.preprocess=auto``: integer pixels
divided by the largest, other features standardised). 100 hidden units, Adam, 100 epochs of
batch 30 (small tabular sets); ``experiments.tune`` searches the learning rate, reg and
dropout from ranges derived from the data. The values below are a starting point for
``experiments.train``, not tuned on any data set.
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "npz"
    c.dataset.preprocess = "auto"
    c.model.name = "two_layer"
    c.model.hidden = 100
    c.model.dropout = 0.0
    c.loss.name = "softmax"
    c.loss.reg = 1e-4
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.train.num_epochs = 100
    c.train.batch_size = 30
    return c
