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

The first-order rules are here; ``newton`` and ``lbfgs`` are in ``lib.second_order`` and the
schedules in ``lib.schedules`` (both re-exported here). ``OPTIMIZERS`` names every rule for
configs: adding an update rule is one entry there.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from lib.rule import (  # noqa: F401  (the rules' states are part of this module's API)
    AdagradState,
    AdamState,
    CacheState,
    CountState,
    MomentumState,
    NesterovState,
    NewtonState,
    OptaxState,
    RmspropState,
    SgdState,
    UpdateRule,
)
from lib.rule import as_schedule as _as_schedule
from lib.rule import check_grads as _check_grads
from lib.rule import count0 as _count0
from lib.rule import tree_map_cast as _map
from lib.rule import validate as _validate
from lib.rule import zeros as _zeros
from lib.schedules import (  # noqa: F401  (re-exported: the schedules' public names)
    SCHEDULES,
    constant,
    exponential_decay,
    get_schedule,
    inverse_time_decay,
    lookup,
    step_decay,
)
from lib.second_order import flat_hessian, lbfgs, newton
from lib.types import Array, Params, Scalar, ScalarOrSchedule

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
# The registry of update rules.


class Optimizer(NamedTuple):
    """A registry entry (``OPTIMIZERS``): how a run builds the rule ``optimizer.name`` names.

    Attributes:
      factory: a minibatch rule's factory takes the learning rate (a schedule) first; a
        full-batch rule's takes the run's objective ``params -> loss`` first. The rest of its
        arguments are ``hparams`` by keyword.
      hparams: the run's hyperparameters it reads (``settings.HPARAMS`` names);
        ``learning_rate`` means the schedule, given first.
      full_batch: one step per epoch on the whole training set, built from its objective.
      max_params: the most parameters it can handle (Newton forms the (P, P) Hessian).
    """

    factory: Callable[..., UpdateRule]
    hparams: tuple[str, ...]
    full_batch: bool = False
    max_params: int | None = None


def newton_on(loss_fn: Callable[[Params], Array], damping: Scalar = 0.0) -> UpdateRule:
    """``newton`` over the Hessian of ``loss_fn`` (``flat_hessian``)."""
    return newton(flat_hessian(loss_fn), damping=damping)


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(sgd, ("learning_rate",)),
    "momentum": Optimizer(momentum, ("learning_rate", "mu")),
    "nesterov": Optimizer(nesterov, ("learning_rate", "mu")),
    "adagrad": Optimizer(adagrad, ("learning_rate", "eps")),
    "rmsprop": Optimizer(rmsprop, ("learning_rate", "decay_rate", "eps")),
    "adam": Optimizer(adam, ("learning_rate", "beta1", "beta2", "eps")),
    "newton": Optimizer(newton_on, ("damping",), full_batch=True, max_params=5000),
    "lbfgs": Optimizer(lbfgs, (), full_batch=True),
}
# The minibatch rules' factories by name (each takes the learning rate first).
RULES: dict[str, Callable[..., UpdateRule]] = {
    name: opt.factory for name, opt in OPTIMIZERS.items() if not opt.full_batch
}


def get_optimizer(name: str) -> Optimizer:
    """The registry entry called ``name`` (a key of ``OPTIMIZERS``)."""
    return lookup("update rule", OPTIMIZERS, name)


def get_rule(name: str) -> Callable[..., UpdateRule]:
    """The minibatch update-rule factory called ``name`` (a key of ``RULES``)."""
    minibatch = {n: o for n, o in OPTIMIZERS.items() if not o.full_batch}
    return lookup("update rule", minibatch, name).factory


def build(
    name: str,
    hparams: dict[str, Any],
    schedule: ScalarOrSchedule,
    loss_fn: Callable[[Params], Array],
) -> UpdateRule:
    """The rule ``name`` closed over (possibly traced) ``hparams``: its factory called with
    ``schedule`` (a minibatch rule) or ``loss_fn`` (a full-batch rule), then the
    hyperparameters it reads."""
    opt = get_optimizer(name)
    kwargs = {k: hparams[k] for k in opt.hparams if k != "learning_rate"}
    return opt.factory(loss_fn if opt.full_batch else schedule, **kwargs)
