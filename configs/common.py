"""The fields every training config has, with their defaults; each config edits a copy."""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Every field of a training config, with what it means."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # the initialisation, dropout and minibatch order (not the data split)
    c.dataset = ml_collections.ConfigDict(
        {
            "name": "digits",
            "data_dir": config_dict.placeholder(str),  # folder (cifar10, mnist) or .npz path
            "num_train": config_dict.placeholder(int),  # keep only this many training examples
            "num_val": config_dict.placeholder(int),  # validation size (default: per data set)
            "scale": 1.0,  # pixels are centred on the training mean, then multiplied by this
            # the train/val/test split, the num_train subset and the spiral's points: fixed,
            # so runs with different seeds are scored on the same validation and test sets
            "split_seed": 0,
        }
    )
    c.model = ml_collections.ConfigDict({"name": "linear", "hidden": 100, "dropout": 0.0})
    c.loss = ml_collections.ConfigDict({"name": "softmax", "reg": 1e-4, "margin": 1.0})
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "momentum",
            "learning_rate": 1e-2,
            "mu": 0.9,
            "beta1": 0.9,
            "beta2": 0.999,
            "decay_rate": 0.99,
            "eps": 1e-8,
            "damping": 0.0,
        }
    )
    # constant | step (x decay every `every` epochs) | exponential (e^{-k t}) | inverse_time
    # (1/(1 + k t)); t counts epochs.
    c.schedule = ml_collections.ConfigDict({"name": "constant", "decay": 0.5, "every": 5, "k": 0.1})
    c.train = ml_collections.ConfigDict(
        {
            "num_epochs": 10,
            "batch_size": 200,
            "ema_decay": 0.0,  # > 0 keeps a running average of the weights
            "train_eval_size": 1000,
        }
    )  # examples scored for the per-epoch train accuracy
    return c
