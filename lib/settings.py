"""Reading an ml_collections config: its Setup, its hyperparameters and its data set.

Only the top-level experiment functions (``train.train_and_evaluate``, ``search.run_search``,
``ensemble.run_ensemble``) read configs; everything below them takes plain arguments. The
config fields are those of ``configs/common.py``; ``train.CONFIG_PATHS`` says where each
hyperparameter lives.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from lib import data, train


def setup_from_config(
    config: ml_collections.ConfigDict, num_features: int, num_classes: int
) -> train.Setup:
    return train.Setup(
        num_features=num_features,
        num_classes=num_classes,
        model=config.model.name,
        hidden=int(config.model.get("hidden", 100)),
        loss=config.loss.name,
        margin=float(config.loss.get("margin", 1.0)),
        optimizer=config.optimizer.name,
        schedule=config.schedule.get("name", "constant"),
        schedule_every=int(config.schedule.get("every", 1)),
        num_epochs=int(config.train.num_epochs),
        batch_size=int(config.train.batch_size),
        ema=float(config.train.get("ema_decay", 0.0)) > 0.0,
        train_eval_size=int(config.train.get("train_eval_size", 1000)),
    )


def get_field(config: ml_collections.ConfigDict, path: str, default: Any = None) -> Any:
    """``config`` at a dotted ``path`` (``default`` where a part is missing)."""
    node = config
    for part in path.split("."):
        if part not in node:
            return default
        node = node[part]
    return node


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
    """Sets ``config`` at a dotted ``path`` (the parent fields must exist)."""
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The traced hyperparameters a config sets (defaults for what it leaves out)."""
    found = {k: get_field(config, train.CONFIG_PATHS[k]) for k in train.HPARAMS}
    return {k: float(v) if v is not None else train.DEFAULT_HPARAMS[k] for k, v in found.items()}


def load_data(config: ml_collections.ConfigDict) -> data.Dataset:
    """The data set a config names (raises a clear error before anything is written)."""
    ds = config.dataset
    return data.load(
        ds.name,
        ds.get("data_dir") or None,
        seed=int(config.get("seed", 0)),
        num_train=ds.get("num_train"),
        num_val=ds.get("num_val"),
        scale=float(ds.get("scale", 1.0)),
    )
