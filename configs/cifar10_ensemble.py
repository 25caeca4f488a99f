r"""Ensemble of 8 linear softmax classifiers on CIFAR-10 (configs/cifar10_softmax.py), 8 seeds.

  python -m experiments.ensemble --config=configs/cifar10_ensemble.py --workdir=runs/cifar_ens \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py

The notes' point, measured: a linear softmax is convex, so every seed converges to nearly the
same classifier and averaging them gains nothing (val 0.421, test 0.413; the members 0.420 and
0.413 on average; 40 s on 2 cores of an Intel Xeon VM, 2026-11-30). Two-layer nets from
different initialisations err apart: configs/cifar10_two_layer_ensemble.py.
"""

from configs import cifar10_softmax
from configs.digits_ensemble import ensemble_block


def get_config():
    c = cifar10_softmax.get_config()
    c.ensemble = ensemble_block("seeds", 8)
    return c
