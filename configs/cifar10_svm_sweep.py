r"""Random search, coarse to fine, for the linear SVM on CIFAR-10 (configs/cifar10_svm.py).

  python -m experiments.sweep --config=configs/cifar10_svm_sweep.py \
      --workdir=runs/cifar10_svm_sweep --config.dataset.data_dir=/path/to/cifar-10-batches-py

The same search as configs/cifar10_sweep.py (128 x 1, 32 x 5, 8 x 20 epochs over learning
rate and reg) with the multiclass hinge loss. It chose cifar10_svm's values: best trial val
0.417, test 0.392 (learning rate 1.9e-4, reg 2.3e-5), 35 s on 2 cores of an Intel Xeon VM
(2026-11-30), no border warning.
"""

from configs import cifar10_sweep


def get_config():
    c = cifar10_sweep.get_config()
    c.loss.name = "hinge"
    return c
