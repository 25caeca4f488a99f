r"""Linear multiclass SVM on CIFAR-10 (the notes' SVM: Weston-Watkins hinge, margin 1).

  python -m experiments.train --config=configs/cifar10_svm.py \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py --workdir=runs/cifar10_svm

configs/cifar10_softmax.py's data and training (momentum, 20 epochs, step decay) with the
hinge loss. The learning rate and reg are the best trial of configs/cifar10_svm_sweep.py
(val 0.417, test 0.392), rounded to two digits. This config reached train 0.397, val 0.416,
test 0.390 in 11 s (2026-11-30, 2 cores of an Intel Xeon VM, JAX 0.10.2 on the CPU).

The values are a starting point for ``python -m experiments.tune --config=configs/cifar10_svm.py
--config.dataset.data_dir=...``, which searches them from ranges derived from the data.
"""

from configs import cifar10_softmax


def get_config():
    c = cifar10_softmax.get_config()
    c.loss.name = "hinge"
    c.loss.reg = 2.3e-5
    c.optimizer.learning_rate = 1.9e-4
    return c
