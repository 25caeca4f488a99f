"""What a benchmark workload is given: its sizes and hyperparameters, as plain values.

``experiments.bench`` defines one flag per field (with these defaults) and passes their
values in; nothing below it reads a flag.
"""

from __future__ import annotations

from typing import NamedTuple


class Options(NamedTuple):
    """The shapes, hyperparameters and seed of the workloads (each field is a bench flag)."""

    num_train: int = 49000  # train, two_layer: training examples
    num_features: int = 3072  # features D (CIFAR-10: 3072)
    num_classes: int = 10  # classes K
    hidden: int = 200  # two_layer: hidden units H
    batch_size: int = 200  # minibatch size
    learning_rate: float = 1e-3  # SGD momentum learning rate
    reg: float = 1e-4  # L2 strength
    mu: float = 0.9  # momentum
    sweep_configs: int = 32  # sweep: configurations
    sweep_epochs: int = 3  # sweep: epochs per configuration
    sweep_train: int = 10000  # sweep: training examples
    num_val: int = 1000  # sweep: validation examples
    members: int = 16  # ensemble: linear members
    ensemble_n: int = 10000  # ensemble: examples scored
    seed: int = 0  # seed of the random data and of the models
