r"""Ensemble of 4 two-layer ReLU nets on CIFAR-10 (configs/cifar10_two_layer.py), 4 seeds.

  python -m experiments.ensemble --config=configs/cifar10_two_layer_ensemble.py \
      --workdir=runs/cifar_two_layer_ens --config.dataset.data_dir=/path/to/cifar-10-batches-py

The data are read from --config.dataset.data_dir (the CIFAR-10 python folder: data_batch_1..5,
test_batch, batches.meta; not shipped with scorelab, and not on the development machine, so this
config has not been run here). For the top trials of a sweep instead of seeds (members may
differ in hidden size; they are grouped by shape):
  --config.ensemble.source=search --config.ensemble.search_dir=<workdir of experiments.sweep>
"""

from configs import cifar10_two_layer
from configs.digits_ensemble import ensemble_block


def get_config():
    c = cifar10_two_layer.get_config()
    c.ensemble = ensemble_block("seeds", 4)
    return c
