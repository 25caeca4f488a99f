"""Orbax checkpoints of a training state, one per epoch, in ``<workdir>/checkpoints``.

A checkpoint is any pytree of arrays (params, optimizer state, EMA, epoch, raw key data).
Saving is synchronous so that a run killed right after ``save`` returns never leaves a
half-written checkpoint behind; orbax writes to a temporary folder and renames it, so an
interrupted save is never mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Optional

from absl import logging
import jax
import orbax.checkpoint as ocp


@contextlib.contextmanager
def _manager(directory: str, create: bool = False):
    """An orbax CheckpointManager, with orbax's INFO chatter kept out of the progress log."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(min(verbosity, logging.WARNING))  # absl: lower = quieter
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=create, enable_async_checkpointing=False)
    try:
        with ocp.CheckpointManager(os.path.abspath(directory), options=options) as mngr:
            yield mngr
    finally:
        logging.set_verbosity(verbosity)


def steps(directory: str) -> list[int]:
    """The saved steps (epochs) in ``directory``, oldest first; [] if there are none."""
    if not os.path.isdir(directory):
        return []
    with _manager(directory) as mngr:
        return sorted(mngr.all_steps())


def save(directory: str, step: int, tree: Any) -> None:
    """Saves ``tree`` as checkpoint ``step`` (replacing nothing that is already there)."""
    with _manager(directory, create=True) as mngr:
        if step in mngr.all_steps():
            return
        mngr.save(step, args=ocp.args.StandardSave(tree))
        mngr.wait_until_finished()


def restore(directory: str, step: Optional[int] = None, like: Any = None) -> Any:
    """Restores checkpoint ``step`` (default: the latest).

    Args:
        directory: the checkpoint folder.
        step: which step; None for the latest.
        like: a pytree with the target structure, shapes and dtypes (arrays or
            ``jax.ShapeDtypeStruct``); None restores the tree as saved.

    Raises:
        FileNotFoundError: there is no such checkpoint.
    """
    available = steps(directory)
    if not available:
        raise FileNotFoundError(
                f"no checkpoint in {directory!r}: train a model into this workdir first "
                "(python -m experiments.train --workdir=...)")
    step = available[-1] if step is None else step
    if step not in available:
        raise FileNotFoundError(
                f"no checkpoint for step {step} in {directory!r}; available steps: {available}")
    with _manager(directory) as mngr:
        if like is None:
            return mngr.restore(step)
        abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
