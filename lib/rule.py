"""The update rule's type and what every rule shares: its state NamedTuples, the range
checks of its hyperparameters (concrete values only; tracers pass through unchecked) and of
its gradients, and small tree helpers. The rules themselves are in ``lib.updates`` (first
order) and ``lib.second_order``; the schedules, which make the same checks, in
``lib.schedules``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lib.types import Array, Params, ScalarOrSchedule, Schedule


class UpdateRule(NamedTuple):
    """A pair of pure functions: ``init(params) -> state`` and
    ``apply(params, state, grads) -> (params, state)``."""

    init: Callable[[Params], Any]
    apply: Callable[[Params, Any, Params], tuple[Params, Any]]


class CountState(NamedTuple):
    """State of sgd and newton. count: number of updates made so far (int32)."""

    count: Array


class MomentumState(NamedTuple):
    """count: updates made (int32); velocity: ``v``, shaped like params."""

    count: Array
    velocity: Params


class CacheState(NamedTuple):
    """count: updates made (int32); cache: the sum (adagrad) or leaky average
    (rmsprop) of squared gradients, shaped like params."""

    count: Array
    cache: Params


class AdamState(NamedTuple):
    """count: updates made (int32); m: first moment; v: second moment."""

    count: Array
    m: Params
    v: Params


class OptaxState(NamedTuple):
    """count: updates made (int32); inner: the wrapped optax state."""

    count: Array
    inner: Any


SgdState = NewtonState = CountState
NesterovState = MomentumState
AdagradState = RmspropState = CacheState


# ----------------------------------------------------------------------------
# Checks (concrete values only; tracers pass through unchecked).


def concrete(name: str, rule: str, value: Any) -> np.ndarray | None:
    """``value`` as a numpy array, or None for a tracer; TypeError if not numeric."""
    if isinstance(value, jax.core.Tracer):
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{rule}: {name} must be a number (or a traced array), got "
            f"{value!r} of type {type(value).__name__}; pass e.g. {name}=0.01."
        )
    return arr


def check(name: str, rule: str, value: Any, ok: Callable[[np.ndarray], Any], valid: str) -> None:
    arr = concrete(name, rule, value)
    if arr is not None and not np.all(ok(arr)):
        raise ValueError(
            f"{rule}: {name}={value!r} is out of range; the valid range is "
            f"{valid}. Pass a value in that range."
        )


_RANGES = {
    "learning_rate": (lambda a: a > 0, "learning_rate > 0 (a number or a schedule: step -> lr)"),
    "mu": (lambda a: (a >= 0) & (a < 1), "0 <= mu < 1"),
    "beta1": (lambda a: (a >= 0) & (a < 1), "0 <= beta1 < 1"),
    "beta2": (lambda a: (a >= 0) & (a < 1), "0 <= beta2 < 1"),
    "decay_rate": (lambda a: (a > 0) & (a < 1), "0 < decay_rate < 1"),
    "eps": (lambda a: a > 0, "eps > 0"),
    "damping": (lambda a: a >= 0, "damping >= 0"),
    "k": (lambda a: a >= 0, "k >= 0"),
}


def validate(rule: str, **values: Any) -> None:
    """Range-checks concrete hyperparameters (schedules and tracers skipped)."""
    for name, value in values.items():
        if not callable(value):
            check(name, rule, value, *_RANGES[name])


def as_schedule(learning_rate: ScalarOrSchedule) -> Schedule:
    return learning_rate if callable(learning_rate) else (lambda _: learning_rate)


def check_grads(rule: str, params: Params, grads: Params) -> None:
    """Cheap structure and shape check where gradients enter ``apply``."""
    p_def, g_def = jax.tree.structure(params), jax.tree.structure(grads)
    if p_def != g_def:
        raise ValueError(
            f"{rule}: grads must have the same tree structure as params; got "
            f"params {p_def} and grads {g_def}. Pass jax.grad(loss)(params)."
        )
    for p, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads)):
        if jnp.shape(p) != jnp.shape(g):
            raise ValueError(
                f"{rule}: a gradient has shape {jnp.shape(g)} but its parameter "
                f"has shape {jnp.shape(p)}; pass gradients shaped like params."
            )


def tree_map_cast(fn: Callable[..., Array], tree: Params, *rest: Params) -> Params:
    """``jax.tree.map(fn, tree, *rest)``, each result cast to its leaf's dtype."""
    return jax.tree.map(lambda x, *r: fn(x, *r).astype(x.dtype), tree, *rest)


def zeros(params: Params) -> Params:
    return jax.tree.map(jnp.zeros_like, params)


def count0() -> Array:
    return jnp.zeros([], jnp.int32)
