r"""Linear softmax classifier on your own arrays, saved as one .npz file.

  python -c "import numpy as np; from sklearn.datasets import load_iris; \
      x, y = load_iris(return_X_y=True); np.savez('iris.npz', x_train=x, y_train=y)"
  python -m experiments.train --config=configs/npz_softmax.py \
      --config.dataset.data_dir=iris.npz --workdir=runs/iris

The file holds ``x_train`` (N, ...) numbers and ``y_train`` (N,) labels, and optionally
``x_val``/``y_val``, ``x_test``/``y_test`` (otherwise a stratified 20% each is split off the
training arrays, drawn from ``dataset.split_seed``) and ``class_names``. Features are centred
on the training mean and put on one scale (``dataset.preprocess=auto``: integer pixels
0..255 divided by the largest, any other features standardised). Rows shaped as images
(N, H, W) or (N, H, W, C) also get the class templates figure. To tune it on your data:
``python -m experiments.tune --config=configs/npz_softmax.py --config.dataset.data_dir=...``.
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "npz"
    c.dataset.preprocess = "auto"
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.loss.reg = 1e-4
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.05
    c.train.num_epochs = 100
    c.train.batch_size = 30
    return c
