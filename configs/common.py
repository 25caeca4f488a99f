"""The fields every training config has, with their defaults; each config edits a copy."""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Every field of a training config, each documented on its line (``--show_config``
    prints a resolved config with these notes)."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # initialisation, dropout and minibatch order (not the data split)
    c.dataset = ml_collections.ConfigDict(
        {
            "name": "digits",  # digits | cifar10 | mnist | spiral | npz
            "data_dir": config_dict.placeholder(str),  # folder (cifar10, mnist) or .npz path
            "num_train": config_dict.placeholder(int),  # keep only this many training examples
            "num_val": config_dict.placeholder(int),  # validation size (default: per data set)
            "scale": 1.0,  # pixels are centred on the training mean, then multiplied by this
            "preprocess": "center",  # center | standardize (x / train std) | auto (pixels or std)
            "split_seed": 0,  # train/val/test split, num_train subset, spiral points (fixed)
        }
    )
    c.model = ml_collections.ConfigDict(
        {
            "name": "linear",  # linear (f = Wx + b) | two_layer (ReLU net)
            "hidden": 100,  # two_layer: hidden units
            "dropout": 0.0,  # two_layer: probability of dropping a hidden unit (inverted)
        }
    )
    c.loss = ml_collections.ConfigDict(
        {
            "name": "softmax",  # softmax (cross-entropy) | hinge (the multiclass SVM)
            "reg": 1e-4,  # L2 strength: loss += reg * sum(W**2) over the weights
            "margin": 1.0,  # hinge: the SVM's margin
        }
    )
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "momentum",  # sgd momentum nesterov adagrad rmsprop adam newton lbfgs
            "learning_rate": 1e-2,  # step size (not read by newton and lbfgs)
            "mu": 0.9,  # momentum, nesterov: velocity decay
            "beta1": 0.9,  # adam: first-moment decay
            "beta2": 0.999,  # adam: second-moment decay
            "decay_rate": 0.99,  # rmsprop: cache decay
            "eps": 1e-8,  # adagrad, rmsprop, adam: added to the root of the cache
            "damping": 0.0,  # newton: added to the Hessian's diagonal
        }
    )
    c.schedule = ml_collections.ConfigDict(
        {
            "name": "constant",  # constant | step | exponential (e^-kt) | inverse_time (1/(1+kt))
            "decay": 0.5,  # step: the learning rate is multiplied by this every `every` epochs
            "every": 5,  # step: epochs between decays
            "k": 0.1,  # exponential, inverse_time: the rate k (t counts epochs)
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "num_epochs": 10,  # epochs to train
            "batch_size": 200,  # examples per minibatch
            "ema_decay": 0.0,  # > 0 keeps a running average of the weights
            "train_eval_size": 1000,  # examples scored for the per-epoch train accuracy
            "checkpoint_every": 5,  # epochs between checkpoints (the last epoch is always saved)
            "keep_checkpoints": 8,  # the latest checkpoints kept (0: all)
            "data_parallel": False,  # split each minibatch over every device of every process
            "shard_data": False,  # data_parallel: each device holds only its share of train rows
        }
    )
    return c
