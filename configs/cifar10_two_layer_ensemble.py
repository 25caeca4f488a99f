r"""Ensemble of the 8 best two-layer nets of a CIFAR-10 sweep (configs/cifar10_two_layer_sweep.py).

  python -m experiments.ensemble --config=configs/cifar10_two_layer_ensemble.py \
      --workdir=runs/cifar10_two_layer_ensemble --config.dataset.data_dir=/path/to/cifar-10-batches-py \
      --config.ensemble.search_dir=runs/cifar10_two_layer_sweep

The members are the sweep's 8 complete trials with the highest validation accuracy, retrained
from their hyperparameters and seeds (one vmapped program per structure); their softmax
probabilities are averaged. For 8 seeds of configs/cifar10_two_layer.py instead:
--config.ensemble.source=seeds.
"""

from configs import cifar10_two_layer
from configs.digits_ensemble import ensemble_block


def get_config():
    c = cifar10_two_layer.get_config()
    c.ensemble = ensemble_block("search", 8)
    c.ensemble.search_dir = "runs/cifar10_two_layer_sweep"
    c.ensemble.own_order = True
    return c
