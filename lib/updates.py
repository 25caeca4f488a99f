"""Update rules and learning-rate schedules (CS231n notes, "Neural Networks 3").

Every rule is a factory returning ``UpdateRule(init, apply)``::

    rule = updates.adam(learning_rate=1e-3)
    state = rule.init(params)
    params, state = rule.apply(params, state, grads)

The formulas are the notes', applied leaf by leaf with ``jax.tree.map``.
Hyperparameters are closed over and may be traced values (jit arguments, or
the mapped axis of a ``jax.vmap`` sweep), so one compiled step serves every
value. Range checks therefore run only on concrete numbers.

``learning_rate`` is a number or a schedule (``step -> lr``); each state counts
the updates already made (``count``, int32) and the first update uses step 0,
as optax schedules do. Schedule steps are UPDATES, not epochs: the trainer
converts epochs to steps.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from lib.scores import PRECISION
from lib.types import Array, Params, Scalar, Schedule, ScalarOrSchedule


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
# Validation (concrete values only; tracers pass through unchecked).


def _concrete(name: str, rule: str, value: Any) -> np.ndarray | None:
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


def _check(name: str, rule: str, value: Any, ok: Callable[[np.ndarray], Any], valid: str) -> None:
    arr = _concrete(name, rule, value)
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


def _validate(rule: str, **values: Any) -> None:
    """Range-checks concrete hyperparameters (schedules and tracers skipped)."""
    for name, value in values.items():
        if not callable(value):
            _check(name, rule, value, *_RANGES[name])


def _as_schedule(learning_rate: ScalarOrSchedule) -> Schedule:
    return learning_rate if callable(learning_rate) else (lambda _: learning_rate)


def _check_grads(rule: str, params: Params, grads: Params) -> None:
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


def _map(fn: Callable[..., Array], tree: Params, *rest: Params) -> Params:
    """``jax.tree.map(fn, tree, *rest)``, each result cast to its leaf's dtype."""
    return jax.tree.map(lambda x, *r: fn(x, *r).astype(x.dtype), tree, *rest)


def _zeros(params: Params) -> Params:
    return jax.tree.map(jnp.zeros_like, params)


def _count0() -> Array:
    return jnp.zeros([], jnp.int32)


# ----------------------------------------------------------------------------
# Update rules.


def sgd(learning_rate: ScalarOrSchedule) -> UpdateRule:
    """Vanilla gradient descent: ``x += -lr * dx``.

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
    """
    _validate("sgd", learning_rate=learning_rate)
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return CountState(count=_count0())

    def apply(params, state, grads):
        _check_grads("sgd", params, grads)
        lr = lr_fn(state.count)
        new = _map(lambda x, dx: x - lr * dx, params, grads)
        return new, CountState(optax.safe_increment(state.count))

    return UpdateRule(init, apply)


def momentum(learning_rate: ScalarOrSchedule, mu: Scalar = 0.9) -> UpdateRule:
    """Momentum update: ``v = mu*v - lr*dx; x += v`` (v starts at zero).

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
      mu: the momentum ("friction") coefficient, ``0 <= mu < 1``.
    """
    _validate("momentum", learning_rate=learning_rate, mu=mu)
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return MomentumState(count=_count0(), velocity=_zeros(params))

    def apply(params, state, grads):
        _check_grads("momentum", params, grads)
        lr = lr_fn(state.count)
        v = _map(lambda v, dx: mu * v - lr * dx, state.velocity, grads)
        new = _map(lambda x, v: x + v, params, v)
        return new, MomentumState(optax.safe_increment(state.count), v)

    return UpdateRule(init, apply)


def nesterov(learning_rate: ScalarOrSchedule, mu: Scalar = 0.9) -> UpdateRule:
    """Nesterov momentum in the notes' re-parameterised form.

    ``v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v``. Here ``x`` is
    the look-ahead point ``x_ahead = x + mu*v`` of the textbook form, so ``dx``
    is the gradient at the parameters that are stored.

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
      mu: the momentum coefficient, ``0 <= mu < 1``.
    """
    _validate("nesterov", learning_rate=learning_rate, mu=mu)
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return MomentumState(count=_count0(), velocity=_zeros(params))

    def apply(params, state, grads):
        _check_grads("nesterov", params, grads)
        lr = lr_fn(state.count)
        v_prev = state.velocity
        v = _map(lambda v, dx: mu * v - lr * dx, v_prev, grads)
        new = _map(lambda x, vp, v: x - mu * vp + (1 + mu) * v, params, v_prev, v)
        return new, MomentumState(optax.safe_increment(state.count), v)

    return UpdateRule(init, apply)


def adagrad(learning_rate: ScalarOrSchedule, eps: Scalar = 1e-8) -> UpdateRule:
    """Adagrad: ``cache += dx**2; x += -lr * dx / (sqrt(cache) + eps)``.

    Note: ``optax.adagrad`` puts eps inside the square root and starts the cache
    at 0.1; this is the notes' form (eps outside, cache from zero).

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
      eps: smoothing term, ``eps > 0``.
    """
    _validate("adagrad", learning_rate=learning_rate, eps=eps)
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return CacheState(count=_count0(), cache=_zeros(params))

    def apply(params, state, grads):
        _check_grads("adagrad", params, grads)
        lr = lr_fn(state.count)
        cache = _map(lambda c, dx: c + dx**2, state.cache, grads)
        new = _map(lambda x, dx, c: x - lr * dx / (jnp.sqrt(c) + eps), params, grads, cache)
        return new, CacheState(optax.safe_increment(state.count), cache)

    return UpdateRule(init, apply)


def rmsprop(
    learning_rate: ScalarOrSchedule, decay_rate: Scalar = 0.99, eps: Scalar = 1e-8
) -> UpdateRule:
    """RMSprop: ``cache = d*cache + (1-d)*dx**2; x += -lr*dx/(sqrt(cache)+eps)``.

    Equals ``optax.rmsprop(lr, decay=d, eps=eps, eps_in_sqrt=False)``.

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
      decay_rate: the leak ``d`` of the squared-gradient average, ``0 < d < 1``.
      eps: smoothing term, ``eps > 0``.
    """
    _validate("rmsprop", learning_rate=learning_rate, decay_rate=decay_rate, eps=eps)
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return CacheState(count=_count0(), cache=_zeros(params))

    def apply(params, state, grads):
        _check_grads("rmsprop", params, grads)
        lr = lr_fn(state.count)
        cache = _map(lambda c, dx: decay_rate * c + (1 - decay_rate) * dx**2, state.cache, grads)
        new = _map(lambda x, dx, c: x - lr * dx / (jnp.sqrt(c) + eps), params, grads, cache)
        return new, CacheState(optax.safe_increment(state.count), cache)

    return UpdateRule(init, apply)


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    beta1: Scalar = 0.9,
    beta2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    bias_correction: bool = True,
) -> UpdateRule:
    """Adam: ``m = b1*m + (1-b1)*dx; v = b2*v + (1-b2)*dx**2``.

    With bias correction (t counts updates from 1):
    ``x += -lr * (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``; without it, the
    notes' simplified form ``x += -lr * m / (sqrt(v) + eps)``.

    Args:
      learning_rate: a positive number or a schedule (step in updates -> lr).
      beta1: first-moment decay, ``0 <= beta1 < 1``.
      beta2: second-moment decay, ``0 <= beta2 < 1``.
      eps: smoothing term, ``eps > 0``.
      bias_correction: whether to divide the moments by ``1 - beta**t``.
    """
    _validate("adam", learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps)
    if not isinstance(bias_correction, (bool, np.bool_)):
        raise TypeError(f"adam: bias_correction must be True or False, got {bias_correction!r}.")
    lr_fn = _as_schedule(learning_rate)

    def init(params):
        return AdamState(count=_count0(), m=_zeros(params), v=_zeros(params))

    def apply(params, state, grads):
        _check_grads("adam", params, grads)
        lr = lr_fn(state.count)
        m = _map(lambda m, dx: beta1 * m + (1 - beta1) * dx, state.m, grads)
        v = _map(lambda v, dx: beta2 * v + (1 - beta2) * dx**2, state.v, grads)
        t = state.count + 1

        def step(x, m, v):
            if bias_correction:  # in the parameters' precision (float64 stays float64)
                m = m / (1 - beta1 ** t.astype(x.dtype))
                v = v / (1 - beta2 ** t.astype(x.dtype))
            return x - lr * m / (jnp.sqrt(v) + eps)

        new = _map(step, params, m, v)
        return new, AdamState(optax.safe_increment(state.count), m, v)

    return UpdateRule(init, apply)


def newton(hessian_fn: Callable[[Params], Array], damping: Scalar = 0.0) -> UpdateRule:
    """Newton's method: ``x += -(H + damping*I)^-1 g`` over the ravelled params.

    For models small enough to form the (P, P) Hessian. The step uses the
    pseudo-inverse of the symmetric ``H + damping*I`` (its eigenvalues below
    ``10 P eps`` times the largest are dropped): where ``H`` is invertible this
    is the Newton step; where the loss is flat along a direction (a softmax's
    scores shifted together by a common bias, so ``H`` is singular) the step
    does not move along it, where a plain solve would divide float32 round-off
    by zero. Large damping tends to gradient descent with learning rate
    ``1/damping``.

    Args:
      hessian_fn: ``params -> H``, the (P, P) Hessian over
        ``jax.flatten_util.ravel_pytree(params)`` (see ``flat_hessian``).
      damping: added to the diagonal, ``damping >= 0``.
    """
    if not callable(hessian_fn):
        raise TypeError(
            "newton: hessian_fn must be a function params -> (P, P) "
            "Hessian; build one with updates.flat_hessian(loss_fn)."
        )
    _validate("newton", damping=damping)

    def init(params):
        return CountState(count=_count0())

    def apply(params, state, grads):
        _check_grads("newton", params, grads)
        flat, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(grads)
        h = hessian_fn(params)
        p = flat.shape[0]
        if jnp.shape(h) != (p, p):
            raise ValueError(
                f"newton: hessian_fn returned shape {jnp.shape(h)}, expected "
                f"({p}, {p}) over ravel_pytree(params); use flat_hessian(loss_fn)."
            )
        # The pseudo-inverse from the eigendecomposition of the symmetric H + damping*I
        # (as jnp.linalg.pinv(..., hermitian=True)), its products at full float32 precision.
        w, v = jnp.linalg.eigh(h + damping * jnp.eye(p, dtype=h.dtype))
        keep = jnp.abs(w) > 10 * p * jnp.finfo(w.dtype).eps * jnp.max(jnp.abs(w))
        inv_w = jnp.where(keep, 1 / jnp.where(keep, w, 1), 0)
        step = -jnp.matmul(v, inv_w * jnp.matmul(g, v, precision=PRECISION), precision=PRECISION)
        return unravel(flat + step.astype(flat.dtype)), CountState(
            optax.safe_increment(state.count)
        )

    return UpdateRule(init, apply)


def flat_hessian(loss_fn: Callable[[Params], Array]) -> Callable[[Params], Array]:
    """``params -> H``: the Hessian of ``loss_fn`` over ``ravel_pytree(params)``."""

    def hessian_fn(params):
        flat, unravel = ravel_pytree(params)
        return jax.hessian(lambda f: loss_fn(unravel(f)))(flat)

    return hessian_fn


def from_optax(tx: optax.GradientTransformation) -> UpdateRule:
    """Wraps an optax GradientTransformation as ``UpdateRule(init, apply)``.

    ``apply`` calls ``tx.update(grads, inner, params)`` then
    ``optax.apply_updates``.
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(
            f"from_optax: expected an optax GradientTransformation "
            f"(e.g. optax.adam(1e-3)), got {type(tx).__name__}."
        )

    def init(params):
        return OptaxState(count=_count0(), inner=tx.init(params))

    def apply(params, state, grads):
        _check_grads("from_optax", params, grads)
        upd, inner = tx.update(grads, state.inner, params)
        return optax.apply_updates(params, upd), OptaxState(
            optax.safe_increment(state.count), inner
        )

    return UpdateRule(init, apply)


# ----------------------------------------------------------------------------
# Schedules: step -> learning rate, steps counted in UPDATES (the trainer
# converts epochs to steps). The first update uses step 0.


def constant(learning_rate: Scalar) -> Schedule:
    """``lr(step) = learning_rate``."""
    _validate("constant", learning_rate=learning_rate)
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
    _validate("step_decay", learning_rate=learning_rate)
    _check(
        "decay_rate", "step_decay", decay_rate, lambda a: (a > 0) & (a <= 1), "0 < decay_rate <= 1"
    )
    _check("every", "step_decay", every, lambda a: a >= 1, "every >= 1 (updates between decays)")
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
    _validate("exponential_decay", learning_rate=learning_rate, k=k)
    return lambda step: learning_rate * jnp.exp(-k * step)


def inverse_time_decay(learning_rate: Scalar, k: Scalar) -> Schedule:
    """``lr(step) = lr / (1 + k * step)`` (the notes' 1/t decay); step in updates.

    Args:
      learning_rate: initial learning rate, ``> 0``.
      k: decay constant per update, ``k >= 0``.
    """
    _validate("inverse_time_decay", learning_rate=learning_rate, k=k)
    return lambda step: learning_rate / (1 + k * step)


# ----------------------------------------------------------------------------
# Registries for the trainer.

RULES: dict[str, Callable[..., UpdateRule]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}

SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step": step_decay,
    "exponential": exponential_decay,
    "inverse_time": inverse_time_decay,
    "1/t": inverse_time_decay,
}


def _lookup(kind: str, table: dict[str, Callable], name: str) -> Callable:
    if name not in table:
        raise ValueError(
            f"unknown {kind} {name!r}; valid names are {sorted(table)}. Pick one of them."
        )
    return table[name]


def get_rule(name: str) -> Callable[..., UpdateRule]:
    """The update-rule factory called ``name`` (a key of ``RULES``)."""
    return _lookup("update rule", RULES, name)


def get_schedule(name: str) -> Callable[..., Schedule]:
    """The schedule factory called ``name`` (a key of ``SCHEDULES``)."""
    return _lookup("schedule", SCHEDULES, name)
