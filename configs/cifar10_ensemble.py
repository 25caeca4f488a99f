r"""Ensemble of 8 linear softmax classifiers on CIFAR-10 (configs/cifar10_softmax.py), 8 seeds.

  python -m experiments.ensemble --config=configs/cifar10_ensemble.py --workdir=runs/cifar_ens \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py

The data are read from --config.dataset.data_dir (the CIFAR-10 python folder: data_batch_1..5,
test_batch, batches.meta; not shipped with scorelab, and not on the development machine, so this
config has not been run here). Other sources: --config.ensemble.source=search|checkpoints|ema
(see configs/digits_ensemble.py).
"""

from configs import cifar10_softmax
from configs.digits_ensemble import ensemble_block


def get_config():
    c = cifar10_softmax.get_config()
    c.ensemble = ensemble_block("seeds", 8)
    return c
