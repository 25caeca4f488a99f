r"""Linear multiclass SVM on CIFAR-10 (the notes' SVM: Weston-Watkins hinge, margin 1).

  python -m experiments.train --config=configs/cifar10_svm.py \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py --workdir=runs/cifar10_svm

Same scaling as configs/cifar10_softmax.py: the notes' raw-pixel values (SGD, learning rate
1e-7, reg 2.5e4) become learning rate 6.5e-3 and reg 0.38 for pixels divided by 255. The notes
report about 0.38-0.39 validation accuracy for the tuned SVM; not run here (no CIFAR-10 on the
development machine).
"""

from configs import cifar10_softmax


def get_config():
    c = cifar10_softmax.get_config()
    c.loss.name = "hinge"
    c.loss.reg = 2.3e-5
    c.optimizer.learning_rate = 1.9e-4
    return c
