"""Workdir files: JSON config/summary, JSON-lines metrics, and one progress line per epoch."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

from absl import logging
import numpy as np


def _plain(value: Any) -> Any:
    """Numpy/JAX scalars and arrays -> plain Python for JSON (NaN/inf become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_plain(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Appends one record as a line of ``path``."""
    with open(path, "a") as f:
        f.write(json.dumps(_plain(record), sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """All complete records of ``path`` ([] if it does not exist); a torn last line is dropped."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> None:
    """Rewrites ``path`` with ``records`` atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(_plain(record), sort_keys=True) + "\n")
    os.replace(tmp, path)


def log_progress(record: dict[str, Any], num_epochs: int) -> None:
    """One absl progress line for an epoch record."""
    logging.info(
            "epoch %3d/%d  loss %.4f  train acc %.4f  val acc %.4f  lr %.3g  "
            "update/weight %.2e  %.2fs",
            record["epoch"], num_epochs, record["train_loss"], record["train_accuracy"],
            record["val_accuracy"], record["learning_rate"], record["update_ratio"],
            record["seconds"])
