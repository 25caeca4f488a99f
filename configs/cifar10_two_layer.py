r"""Two-layer ReLU net on CIFAR-10 (the notes' / assignment's two-layer classifier).

  python -m experiments.train --config=configs/cifar10_two_layer.py \
      --config.dataset.data_dir=/path/to/cifar-10-batches-py --workdir=runs/cifar10_two_layer

Hidden layer of 200 ReLUs, Adam, a step decay of the learning rate, L2 regularisation. A tuned
two-layer net reaches about 0.50 validation accuracy on CIFAR-10 in the course; this config follows
that recipe but was not run here (no CIFAR-10 on the development machine). Tune it with
configs/cifar10_two_layer_sweep.py.
"""

from configs import common


def get_config():
    c = common.base_config()
    c.dataset.name = "cifar10"
    c.dataset.scale = 1.0 / 255.0
    c.model.name = "two_layer"
    c.model.hidden = 200
    c.model.dropout = 0.11
    c.loss.name = "softmax"
    c.loss.reg = 1.1e-5
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 2.8e-3
    c.schedule.name = "step"
    c.schedule.decay = 0.5
    c.schedule.every = 5
    c.train.num_epochs = 15
    c.train.batch_size = 200
    c.train.ema_decay = 0.999  # also evaluates a running average of the weights
    return c
