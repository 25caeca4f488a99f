r"""Random search, coarse to fine, for the linear softmax classifier on CIFAR-10.

  python -m experiments.sweep --config=configs/cifar10_sweep.py --workdir=runs/cifar10_sweep \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py

Built on configs/cifar10_softmax.py (momentum, step decay, pixels / 255, batch 200): 128
(learning rate, reg) pairs drawn log-uniformly x 1 epoch, then 32 x 5 epochs and 8 x 20 inside
the ranges the best quarter narrowed. It chose cifar10_softmax's values: best trial val 0.424,
test 0.415 (learning rate 0.0129, reg 2.4e-6), 37 s on 2 cores of an Intel Xeon VM
(2026-11-30), no border warning.
"""

from configs import cifar10_softmax
from configs.digits_sweep import search_block


def get_config():
    c = cifar10_softmax.get_config()
    c.search = search_block(
        stages="128x1,32x5,8x20",
        space={
            "learning_rate": {"low": 1e-5, "high": 1e-1, "scale": "log"},
            "reg": {"low": 1e-8, "high": 1e0, "scale": "log"},
        },
    )
    return c
