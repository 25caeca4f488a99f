"""Orbax checkpoints of a training state, one every ``train.checkpoint_every`` epochs (and
the last), in ``<workdir>/checkpoints``.

A checkpoint is any pytree of arrays (params, optimizer state, EMA, epoch, raw key data).
Saving is synchronous so that a run killed right after ``save`` returns never leaves a
half-written checkpoint behind; orbax writes to a temporary folder and renames it, so an
interrupted save is never mistaken for a finished one.

In a multi-process run every process makes the same calls together: orbax writes each array
once, whichever processes' devices hold it. ``solo=True`` (every function) is for process 0
of a multi-process run alone, while the others do not take part (a sweep's best_params/): no
barrier with them, which they would never reach, and host numpy arrays restored.

A damaged checkpoint (a file cut short or emptied by a kill or a full disk, metadata that no
longer parses) is never a traceback: in one process, `steps` reads the latest first and moves
a damaged one aside to ``<directory>.damaged/`` with a warning, so that the run resumes from
the one before it (nothing is deleted); `restore` refuses one it cannot read with one line.
A value changed inside an array's data is not detected: orbax keeps no checksum of it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keeps orbax's INFO chatter out of the progress log."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(min(verbosity, logging.WARNING))  # absl: lower = quieter
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


@contextlib.contextmanager
def manager(
    directory: str, create: bool = True, keep: int | None = None, solo: bool = False
) -> Iterator[ocp.CheckpointManager]:
    """An open orbax CheckpointManager for ``directory``; reuse it for many saves.

    ``keep``: how many of the latest checkpoints to keep (None: all); older ones are deleted
    as new ones are saved, the latest is always kept. ``solo``: see the module docstring.
    """
    solo_options = {}
    if solo:  # orbax refuses create=True for a subset of the processes: make it here
        if create:
            os.makedirs(directory, exist_ok=True)
        create = False
        solo_options["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
            primary_host=0, active_processes={0}
        )
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=create,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=create,  # a save a hard kill cut short leaves a *-tmp folder
        **solo_options,
    )
    with _quiet():
        mngr = ocp.CheckpointManager(os.path.abspath(directory), options=options)
    try:
        yield mngr
    finally:
        with _quiet():
            mngr.close()


def steps(directory: str, solo: bool = False) -> list[int]:
    """The saved steps (epochs) in ``directory``, oldest first; [] if there are none.

    In a run of one process, the latest checkpoint is read first: a damaged one is moved
    aside (`_move_aside`, with a warning) and the one before it checked in turn.

    Raises:
      ValueError: no checkpoint in ``directory`` can be read (then nothing was moved).
    """
    if not os.path.isdir(directory):
        return []
    with manager(directory, create=False, solo=solo) as mngr:
        found = sorted(mngr.all_steps())
    if not found or jax.process_count() > 1:  # (a multi-process run: `restore` refuses)
        return found
    damaged = {}
    for step in reversed(found):
        damaged[step] = _unreadable(directory, step)
        if damaged[step] is None:
            del damaged[step]
            break
    if len(damaged) == len(found):
        raise ValueError(
            f"no checkpoint in {directory!r} can be read (step {found[-1]}: "
            f"{damaged[found[-1]]}); move that folder aside to train from scratch"
        )
    for step in sorted(damaged, reverse=True):
        moved = _move_aside(directory, step)
        logging.warning(
            "the checkpoint of step %d cannot be read (%s): moved it to %s (nothing deleted); "
            "resuming from step %d",
            step,
            damaged[step],
            moved,
            max(s for s in found if s not in damaged),
        )
    return [s for s in found if s not in damaged]


def _error_line(error: BaseException) -> str:
    message = re.sub(r"\s+", " ", str(error)).strip()[:300]
    return f"{type(error).__name__}: {message}"


def _unreadable(directory: str, step: int) -> str | None:
    """Why checkpoint ``step`` cannot be read (its metadata and every array, as host numpy
    arrays: no devices involved), or None when it can."""
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
    handler = ocp.StandardCheckpointHandler()
    path = os.path.abspath(directory)
    try:
        with _quiet(), ocp.CheckpointManager(path, options=options, item_handlers=handler) as m:
            metadata = m.item_metadata(step)
            like = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), metadata)
            m.restore(step, args=ocp.args.StandardRestore(like))
    except Exception as e:  # noqa: BLE001 (a damaged file: whatever orbax or tensorstore raised)
        return _error_line(e)
    return None


def _move_aside(directory: str, step: int) -> str:
    """Moves checkpoint ``step`` of ``directory`` to ``<directory>.damaged/<step>[-n]``."""
    aside = os.path.abspath(directory).rstrip(os.sep) + ".damaged"
    os.makedirs(aside, exist_ok=True)
    target, n = os.path.join(aside, str(step)), 1
    while os.path.exists(target):
        target, n = os.path.join(aside, f"{step}-{n}"), n + 1
    os.replace(os.path.join(directory, str(step)), target)
    return target


def save(target: str | ocp.CheckpointManager, step: int, tree: Any, solo: bool = False) -> None:
    """Saves ``tree`` as checkpoint ``step`` unless that step is already saved.

    Args:
      target: a checkpoint folder, or a manager from ``manager(folder)`` (faster when
        saving every epoch).
      step: the step (epoch) number.
      tree: a pytree of arrays.
      solo: see the module docstring (with a folder as ``target``).
    """
    if isinstance(target, str):
        with manager(target, solo=solo) as mngr:
            return save(mngr, step, tree)
    with _quiet():
        if step not in target.all_steps():
            target.save(step, args=ocp.args.StandardSave(tree))
            target.wait_until_finished()


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    sharding = leaf.sharding if isinstance(leaf, jax.Array) else None
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def restore(directory: str, step: int | None = None, like: Any = None, solo: bool = False) -> Any:
    """Restores checkpoint ``step`` (default: the latest).

    Args:
      directory: the checkpoint folder.
      step: which step; None for the latest.
      like: a pytree with the target structure, shapes and dtypes (arrays or
        ``jax.ShapeDtypeStruct``), and for ``jax.Array`` leaves their layout over the devices
        (a checkpoint is restored onto any devices, of any number of processes: it holds the
        full values); None restores the tree as saved.
      solo: see the module docstring (``like`` required; numpy arrays come back).

    Raises:
      FileNotFoundError: there is no such checkpoint.
      ValueError: the checkpoint cannot be read (damaged).
    """
    available = steps(directory, solo)
    if not available:
        raise FileNotFoundError(
            f"no checkpoint in {directory!r}: train a model into this workdir first "
            "(python -m experiments.train --workdir=...)"
        )
    step = available[-1] if step is None else step
    if step not in available:
        raise FileNotFoundError(
            f"no checkpoint for step {step} in {directory!r}; available steps: {available}"
        )
    if like is None:
        abstract = None
    elif solo:  # host arrays: process 0 alone cannot place arrays on the global devices
        abstract = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), like)
    else:
        abstract = jax.tree.map(_abstract, like)
    with manager(directory, create=False, solo=solo) as mngr, _quiet():
        try:
            return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001 (a damaged file: whatever orbax raised)
            raise ValueError(
                f"the checkpoint of step {step} in {directory!r} cannot be read "
                f"({_error_line(e)}): it is damaged; move {os.path.join(directory, str(step))!r} "
                "aside to resume from the one before it"
            ) from None
