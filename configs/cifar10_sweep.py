r"""Random search, coarse to fine, for a linear softmax classifier on CIFAR-10.

  python -m experiments.sweep --config=configs/cifar10_sweep.py --workdir=runs/cifar10_sweep \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py

Pixels are centred and scaled to [-1, 1]-ish (scale 1/255), so learning rates near 1e-3..1e-1
train with momentum; 64 trials x 1 epoch, then 16 x 5, then 4 x 20.
"""

from configs import common
from configs.digits_sweep import search_block


def get_config():
    c = common.base_config()
    c.dataset.name = "cifar10"
    c.dataset.scale = 1.0 / 255.0
    c.model.name = "linear"
    c.loss.name = "softmax"
    c.optimizer.name = "momentum"
    c.train.batch_size = 200
    c.train.num_epochs = 20
    c.search = search_block(
        stages="64x1,16x5,4x20",
        trials_per_batch=32,
        space={
            "learning_rate": {"low": 1e-5, "high": 1e-1, "scale": "log"},
            "reg": {"low": 1e-5, "high": 1e0, "scale": "log"},
        },
    )
    return c
