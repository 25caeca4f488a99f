r"""Bayesian (TPE) search for the two-layer net on CIFAR-10: learning rate, reg, dropout and
the hidden size (structural: one vmapped batch per size).

  python -m experiments.sweep --config=configs/cifar10_two_layer_sweep.py \
      --workdir=runs/cifar10_two_layer_sweep --config.dataset.data_dir=/path/to/cifar-10-batches-py
"""

from configs import common
from configs.digits_sweep import search_block


def get_config():
    c = common.base_config()
    c.dataset.name = "cifar10"
    c.dataset.scale = 1.0 / 255.0
    c.model.name = "two_layer"
    c.model.hidden = 100
    c.loss.name = "softmax"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.train.batch_size = 200
    c.train.num_epochs = 10
    c.search = search_block(
        sampler="tpe",
        stages="64x1,16x5,4x15",
        trials_per_batch=32,
        space={
            "learning_rate": {"low": 1e-5, "high": 1e-2, "scale": "log"},
            "reg": {"low": 1e-6, "high": 1e-1, "scale": "log"},
            "dropout": {"low": 0.0, "high": 0.6, "scale": "linear"},
            "hidden": {"choices": (100, 200)},
        },
    )
    return c
