r"""Bayesian (TPE) search for the two-layer net on CIFAR-10: learning rate, reg and dropout.

  python -m experiments.sweep --config=configs/cifar10_two_layer_sweep.py \
      --workdir=runs/cifar10_two_layer_sweep --config.dataset.data_dir=/path/to/cifar-10-batches-py

Built on configs/cifar10_two_layer.py (200 hidden units, Adam, step decay). 160 trials x 1
epoch (32 random, then TPE in batches of 32), 32 x 4 and 16 x 15 epochs, 208 configurations.
Measured (2026-11-30, 2 cores of an Intel Xeon VM): 13 min 9 s, best trial val 0.567, test
0.545 (learning rate 9.2e-4, reg 3.1e-6, dropout 0.12); the reg border warning fires (the
best trials want as little L2 as the range allows: dropout does the regularising).
"""

from configs import cifar10_two_layer
from configs.digits_sweep import search_block


def get_config():
    c = cifar10_two_layer.get_config()
    c.train.num_epochs = 15
    c.train.ema_decay = 0.0  # trials are ranked by their raw weights
    c.search = search_block(
        sampler="tpe",
        stages="160x1,32x4,16x15",
        trials_per_batch=32,
        tpe_startup=32,
        space={
            "learning_rate": {"low": 1e-4, "high": 1e-2, "scale": "log"},
            "reg": {"low": 1e-6, "high": 1e-1, "scale": "log"},
            "dropout": {"low": 0.0, "high": 0.6, "scale": "linear"},
        },
    )
    return c
