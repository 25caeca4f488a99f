r"""Random search, coarse to fine, for the linear softmax classifier on CIFAR-10.

  python -m experiments.sweep --config=configs/cifar10_sweep.py --workdir=runs/cifar10_sweep \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py

Built on configs/cifar10_softmax.py (pixels / 255, batch 200); the sweep trains with momentum,
so learning rates near 1e-3..1e-1 train; 64 trials x 1 epoch, then 16 x 5, then 4 x 20.
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
