"""Workdir files: JSON config/summary, JSON-lines metrics, and one progress line per epoch."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import numpy as np
from absl import logging


def to_json(value: Any) -> Any:
    """Numpy/JAX scalars and arrays -> plain Python for JSON (NaN/inf become strings)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):
        return to_json(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@contextlib.contextmanager
def atomic(path: str, newline: str | None = None) -> Iterator[TextIO]:
    """A text file to write that replaces ``path`` in one rename once the block ends (a
    temporary file of its own, so processes sharing a workdir never write into one file)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", newline=newline) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` to ``path`` atomically (a temporary file, then a rename)."""
    with atomic(path) as f:
        json.dump(to_json(obj), f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str) -> Any:
    """The JSON value in ``path``.

    Raises:
      ValueError: ``path`` holds no valid JSON (a damaged file), naming it.
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(
            f"{path} is damaged ({type(e).__name__}: {e}); restore it from a copy, or move "
            "the workdir aside and start again"
        ) from None


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Appends one record as a line of ``path``."""
    with open(path, "a") as f:
        f.write(json.dumps(to_json(record), sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """All records of ``path`` ([] if it does not exist); a torn last line (a write cut
    short) is dropped with a warning.

    Raises:
      ValueError: a line before the last is not a JSON record (the file is damaged); nothing
        is changed.
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif i == len(lines) - 1:
            logging.warning("%s: its last line is cut short (%r); dropped", path, line[:80])
        else:
            raise ValueError(
                f"{path} is damaged: line {i + 1} of {len(lines)} is not a JSON record "
                f"({line[:80]!r}); repair or delete that line, or move the workdir aside"
            )
    return records


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> None:
    """Rewrites ``path`` with ``records`` atomically."""
    with atomic(path) as f:
        for record in records:
            f.write(json.dumps(to_json(record), sort_keys=True) + "\n")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested config dicts as dotted keys."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_config(
    workdir: str, config_dict: dict[str, Any], what: str, resumable: Iterable[str] = ()
) -> None:
    """Refuses a workdir whose config.json holds a different config.

    Args:
      workdir: the experiment's folder (nothing there is changed).
      config_dict: the resolved config of the new run.
      what: what the workdir holds, for the message ("run", "sweep", "ensemble").
      resumable: dotted keys allowed to differ (e.g. ``train.num_epochs`` to extend a run).

    Raises:
      ValueError: naming every differing field, old -> new.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    old, new = flatten(read_json(path)), flatten(to_json(config_dict))
    diff = sorted(k for k in set(old) | set(new) if k not in resumable and old.get(k) != new.get(k))
    if diff:
        changes = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(
            f"workdir {workdir!r} holds a {what} with a different config ({changes}); "
            "rerun with the same config to resume it, or choose a new --workdir"
        )


def log_progress(record: dict[str, Any], num_epochs: int) -> None:
    """One absl progress line for an epoch record."""
    logging.info(
        "epoch %3d/%d  loss %.4f  train acc %.4f  val acc %.4f  lr %.3g  update/weight %.2e  %.2fs",
        record["epoch"],
        num_epochs,
        record["train_loss"],
        record["train_accuracy"],
        record["val_accuracy"],
        record["learning_rate"],
        record["update_ratio"],
        record["seconds"],
    )
