r"""Bayesian (TPE) search for the two-layer net on CIFAR-10: learning rate, reg, dropout and
the hidden size (structural: one vmapped batch per size).

  python -m experiments.sweep --config=configs/cifar10_two_layer_sweep.py \
      --workdir=runs/cifar10_two_layer_sweep --config.dataset.data_dir=/path/to/cifar-10-batches-py

Built on configs/cifar10_two_layer.py (Adam, step decay). TPE claims each stage in batches
of ``trials_per_batch`` and tells each batch before claiming the next. Stage 1 begins with
``tpe_startup`` random trials, then models the trials finished before each batch; stages 2
and 3 model the previous stage's trials from their first trial on (and their own once they
have ``tpe_startup``). Smaller batches model more often but fill the device less.
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
