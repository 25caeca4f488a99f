"""Learning-rate schedules (CS231n notes, "Neural Networks 3"): ``step -> lr``, steps counted
in UPDATES, the first update using step 0 (as optax schedules do).

``SCHEDULES`` names them for configs; each entry also says how a run's per-epoch settings
(``settings.SCHEDULE_HPARAMS``: ``lr_decay`` every ``schedule_every`` epochs, ``lr_k`` per
epoch) become the schedule's per-update arguments, so the trainer builds any schedule in one
call (``in_updates``). Adding a schedule is one entry.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lib.rule import check, validate
from lib.types import Scalar, Schedule


def constant(learning_rate: Scalar) -> Schedule:
    """``lr(step) = learning_rate``."""
    validate("constant", learning_rate=learning_rate)
    return optax.constant_schedule(learning_rate)


def step_decay(learning_rate: Scalar, decay_rate: Scalar, every: int) -> Schedule:
    """``lr(step) = lr * decay_rate ** floor(step / every)``; step in updates.

    ``optax.exponential_decay(lr, every, decay_rate, staircase=True)``; a traced
    ``decay_rate`` or ``every`` uses the same formula written out (optax's
    factory branches on their values in Python).

    Args:
      learning_rate: initial learning rate, ``> 0``.
      decay_rate: factor applied every ``every`` updates, ``0 < decay_rate <= 1``.
      every: number of UPDATES between decays, a positive integer.
    """
    validate("step_decay", learning_rate=learning_rate)
    check(
        "decay_rate", "step_decay", decay_rate, lambda a: (a > 0) & (a <= 1), "0 < decay_rate <= 1"
    )
    check("every", "step_decay", every, lambda a: a >= 1, "every >= 1 (updates between decays)")
    if not any(isinstance(v, jax.core.Tracer) for v in (decay_rate, every)):
        return optax.exponential_decay(learning_rate, every, decay_rate, staircase=True)
    return lambda step: learning_rate * decay_rate ** jnp.floor(step / every)


def exponential_decay(learning_rate: Scalar, k: Scalar) -> Schedule:
    """``lr(step) = lr * exp(-k * step)``; step in updates.

    Equal to ``optax.exponential_decay(lr, 1, exp(-k))``, written in the notes'
    form so that ``k`` may be traced.

    Args:
      learning_rate: initial learning rate, ``> 0``.
      k: decay constant per update, ``k >= 0``.
    """
    validate("exponential_decay", learning_rate=learning_rate, k=k)
    return lambda step: learning_rate * jnp.exp(-k * step)


def inverse_time_decay(learning_rate: Scalar, k: Scalar) -> Schedule:
    """``lr(step) = lr / (1 + k * step)`` (the notes' 1/t decay); step in updates.

    Args:
      learning_rate: initial learning rate, ``> 0``.
      k: decay constant per update, ``k >= 0``.
    """
    validate("inverse_time_decay", learning_rate=learning_rate, k=k)
    return lambda step: learning_rate / (1 + k * step)


class NamedSchedule(NamedTuple):
    """A registry entry (``SCHEDULES``).

    Attributes:
      factory: the schedule over updates (``constant``, ``step_decay``, ...).
      hparams: the run's hyperparameters it reads besides ``learning_rate``.
      per_epoch: ``(learning_rate, hparams, steps_per_epoch, every_epochs) -> schedule``:
        the factory called with a run's per-epoch settings turned into updates.
    """

    factory: Callable[..., Schedule]
    hparams: tuple[str, ...]
    per_epoch: Callable[[Scalar, Mapping[str, Any], int, int], Schedule]


_INVERSE_TIME = NamedSchedule(
    inverse_time_decay,
    ("lr_k",),
    lambda lr, hp, steps, every: inverse_time_decay(lr, hp["lr_k"] / steps),
)
SCHEDULES: dict[str, NamedSchedule] = {
    "constant": NamedSchedule(constant, (), lambda lr, hp, steps, every: constant(lr)),
    "step": NamedSchedule(
        step_decay,
        ("lr_decay",),
        lambda lr, hp, steps, every: step_decay(lr, hp["lr_decay"], every * steps),
    ),
    "exponential": NamedSchedule(
        exponential_decay,
        ("lr_k",),
        lambda lr, hp, steps, every: exponential_decay(lr, hp["lr_k"] / steps),
    ),
    "inverse_time": _INVERSE_TIME,
    "1/t": _INVERSE_TIME,
}


def lookup(kind: str, table: Mapping[str, Any], name: str) -> Any:
    """``table[name]``; ValueError naming the valid names when ``name`` is not one of them."""
    if name not in table:
        raise ValueError(
            f"unknown {kind} {name!r}; valid names are {sorted(table)}. Pick one of them."
        )
    return table[name]


def get_schedule(name: str) -> Callable[..., Schedule]:
    """The schedule factory called ``name`` (a key of ``SCHEDULES``)."""
    return lookup("schedule", SCHEDULES, name).factory


def in_updates(name: str, learning_rate: Scalar, hparams, steps: int, every: int) -> Schedule:
    """Schedule ``name`` over updates, from a run's per-epoch settings: ``steps`` updates per
    epoch, a step decay every ``every`` epochs, ``lr_k`` per epoch."""
    return lookup("schedule", SCHEDULES, name).per_epoch(learning_rate, hparams, steps, every)
