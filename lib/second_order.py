"""Second-order update rules: Newton's method and L-BFGS (CS231n notes, "Neural Networks 3").

Both step on the whole training objective, so what they need from it is given at
construction (``newton`` its Hessian function, ``lbfgs`` the objective itself, for its line
search); then they are update rules like any other, ``(params, state, grads) -> (params,
state)``, and the trainer runs them on the same path as SGD (one full-batch step per epoch).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from lib.rule import CountState, UpdateRule, check_grads, count0, validate
from lib.scores import PRECISION
from lib.types import Array, Params, Scalar


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
    validate("newton", damping=damping)

    def init(params):
        return CountState(count=count0())

    def apply(params, state, grads):
        check_grads("newton", params, grads)
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


def lbfgs(loss_fn: Callable[[Params], Array], memory_size: int = 10) -> UpdateRule:
    """L-BFGS: a quasi-Newton step from the last ``memory_size`` parameter and gradient
    differences, its length from a line search on ``loss_fn`` (``optax.lbfgs``, zoom line
    search with the strong Wolfe conditions). It takes no learning rate.

    Args:
      loss_fn: ``params -> loss``, the objective the gradients given to ``apply`` belong to
        (the line search evaluates it).
      memory_size: how many past differences approximate the inverse Hessian.

    The state is optax's L-BFGS state.
    """
    if not callable(loss_fn):
        raise TypeError("lbfgs: loss_fn must be a function params -> loss (the full objective).")
    tx = optax.lbfgs(memory_size=memory_size)

    def apply(params, state, grads):
        check_grads("lbfgs", params, grads)
        value = loss_fn(params)
        upd, state = tx.update(grads, state, params, value=value, grad=grads, value_fn=loss_fn)
        return optax.apply_updates(params, upd), state

    return UpdateRule(tx.init, apply)
