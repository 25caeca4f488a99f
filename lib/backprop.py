"""Hand-written backward passes, staged as the notes teach.

Each function runs a staged forward pass that keeps every intermediate value,
then walks the stages backwards: each gate multiplies its *local* gradient by
the *upstream* gradient flowing into it, and where a value feeds several
places (a fork) the gradients from each branch add up. The canonical fork
here is a weight matrix, which reaches the loss through the data term and the
regulariser, so ``dW = (data-loss gradient) + 2 * reg * W``.

The losses are the library's: mean data loss + ``losses.l2_penalty(params, reg)``
(``reg * sum W**2``, biases unpenalised), so every function here equals
``jax.value_and_grad`` of the same composition (checked in the tests).
Everything is pure jnp and jittable; ``reg`` and ``margin`` may be traced.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from lib import losses, scores
from lib.types import Array, Params, Scalar

__all__ = ["BACKPROP", "linear_hinge", "linear_softmax", "sigmoid_neuron", "two_layer_softmax"]


def sigmoid_neuron(w: Array, x: Array) -> tuple[Array, dict[str, Array]]:
    """The notes' 2-D sigmoid neuron and its gradients.

    ``f = sigma(w0 x0 + w1 x1 + w2)``; the sigmoid gate's local gradient is
    ``(1 - f) f``.

    Args:
      w: ``[w0, w1, w2]`` (w2 is the bias), shape ``(3,)``.
      x: ``[x0, x1]``, shape ``(2,)``.

    Returns:
      ``(f, {"w": df/dw (3,), "x": df/dx (2,)})``.
    """
    w, x = jnp.asarray(w), jnp.asarray(x)
    if w.shape != (3,) or x.shape != (2,):
        raise ValueError(
            f"sigmoid_neuron expects w of shape (3,) = [w0, w1, bias] and x of "
            f"shape (2,), got {tuple(w.shape)} and {tuple(x.shape)}."
        )
    # forward pass
    dot = w[0] * x[0] + w[1] * x[1] + w[2]  # multiply and add gates
    f = 1.0 / (1.0 + jnp.exp(-dot))  # sigmoid gate
    # backward pass
    ddot = (1.0 - f) * f  # sigmoid local gradient x upstream df/df = 1
    dx = jnp.stack([w[0] * ddot, w[1] * ddot])  # multiply gate: swap the inputs
    dw = jnp.stack([x[0] * ddot, x[1] * ddot, 1.0 * ddot])  # bias: add gate
    return f, {"w": dw, "x": dx}


def _softmax_backward(s: Array, y: Array) -> tuple[Array, Array]:
    """Mean softmax cross-entropy and its gradient with respect to the scores.

    Forward: shift by the row max (stability), exponentiate, normalise, take
    ``-log p_{y_i}``. Backward: ``dL/ds = (p - onehot(y)) / N``.
    """
    n, k = s.shape
    # forward
    shifted = s - jnp.max(s, axis=1, keepdims=True)  # same softmax, no overflow
    exp_s = jnp.exp(shifted)
    sum_exp = jnp.sum(exp_s, axis=1, keepdims=True)
    probs = exp_s / sum_exp  # (N, K)
    log_probs_y = jnp.take_along_axis(shifted, y[:, None], axis=1)[:, 0] - jnp.log(sum_exp[:, 0])
    data_loss = -jnp.mean(log_probs_y)
    # backward: d(mean)/dL_i = 1/N, dL_i/ds_ij = p_ij - [j == y_i]
    onehot = (jnp.arange(k)[None, :] == y[:, None]).astype(s.dtype)
    ds = (probs - onehot) / n
    return data_loss, ds


def _hinge_backward(s: Array, y: Array, margin: Scalar) -> tuple[Array, Array]:
    """Mean multiclass hinge loss and its gradient with respect to the scores."""
    n, k = s.shape
    # forward
    is_correct = jnp.arange(k)[None, :] == y[:, None]  # (N, K)
    s_y = jnp.take_along_axis(s, y[:, None], axis=1)  # (N, 1)
    margins = jnp.where(is_correct, 0.0, jnp.maximum(0.0, s - s_y + margin))
    data_loss = jnp.sum(margins) / n
    # backward
    dmargins = jnp.full_like(s, 1.0 / n)  # mean over the batch, sum over j
    # max gate routes the gradient only to active margins; j = y_i is excluded
    dz = jnp.where(is_correct | (margins <= 0.0), 0.0, dmargins)
    ds = dz  # through "+ s_j" with local gradient 1 ...
    # ... and s_{y_i} forks into every j's margin with local gradient -1: add up
    ds = ds - is_correct * jnp.sum(dz, axis=1, keepdims=True)
    return data_loss, ds


def _matmul(a: Array, b: Array) -> Array:
    """``a @ b`` at full float32 precision on every backend (`scores.PRECISION`)."""
    return jnp.matmul(a, b, precision=scores.PRECISION)


def _linear_backward(params: Params, x: Array, ds: Array, reg: Scalar) -> dict[str, Array]:
    """Backward through ``s = x W^T + b`` plus the L2 fork on W."""
    dW = _matmul(ds.T, x)  # (K, N) @ (N, D): local gradient of x W^T is x
    db = jnp.sum(ds, axis=0)  # bias is broadcast over the batch: sum
    dW = dW + 2.0 * reg * params["W"]  # fork: the regulariser's branch adds
    return {"W": dW, "b": db}


def linear_softmax(
    params: Params, x: Array, y: Array, reg: Scalar
) -> tuple[Array, dict[str, Array]]:
    """Linear classifier with softmax loss: loss and gradients by hand.

    ``L = mean_i(-log softmax(x_i W^T + b)_{y_i}) + reg * sum W**2``.

    Args:
      params: ``{"W": (K, D), "b": (K,)}``.
      x: inputs ``(N, D)``.
      y: integer labels ``(N,)``.
      reg: L2 strength.

    Returns:
      ``(loss, grads)`` with grads shaped like params.
    """
    # forward: scores (checks the shapes of params and x), then loss
    s = scores.linear(params, x)
    s, y = losses.check_scores_and_labels(s, y)
    data_loss, ds = _softmax_backward(s, y)
    reg_loss = reg * jnp.sum(params["W"] ** 2)
    loss = data_loss + reg_loss
    # backward
    return loss, _linear_backward(params, jnp.asarray(x), ds, reg)


def linear_hinge(
    params: Params, x: Array, y: Array, reg: Scalar, margin: Scalar = 1.0
) -> tuple[Array, dict[str, Array]]:
    """Linear classifier with multiclass hinge (SVM) loss: loss and gradients by hand.

    ``L = mean_i sum_{j != y_i} max(0, s_j - s_{y_i} + margin) + reg * sum W**2``.

    At a kink (a margin exactly 0) the subgradient 0 is used.

    Args:
      params: ``{"W": (K, D), "b": (K,)}``.
      x: inputs ``(N, D)``.
      y: integer labels ``(N,)``.
      reg: L2 strength.
      margin: the margin Delta.

    Returns:
      ``(loss, grads)`` with grads shaped like params.
    """
    # forward
    s = scores.linear(params, x)
    s, y = losses.check_scores_and_labels(s, y)
    data_loss, ds = _hinge_backward(s, y, margin)
    reg_loss = reg * jnp.sum(params["W"] ** 2)
    loss = data_loss + reg_loss
    # backward
    return loss, _linear_backward(params, jnp.asarray(x), ds, reg)


def two_layer_softmax(
    params: Params, x: Array, y: Array, reg: Scalar
) -> tuple[Array, dict[str, Array]]:
    """Two-layer ReLU network with softmax loss (no dropout): loss and gradients by hand.

    ``h = max(0, x W1^T + b1)``, ``s = h W2^T + b2``,
    ``L = mean softmax CE + reg * (sum W1**2 + sum W2**2)``.

    Args:
      params: ``{"W1": (H, D), "b1": (H,), "W2": (K, H), "b2": (K,)}``.
      x: inputs ``(N, D)``.
      y: integer labels ``(N,)``.
      reg: L2 strength.

    Returns:
      ``(loss, grads)`` with grads shaped like params.
    """
    scores.check_params(params, ("W1", "b1", "W2", "b2"), "two_layer")
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    x = jnp.asarray(x)
    # forward, caching each stage
    z1 = scores.affine(W1, b1, x, "W1")  # first affine layer (N, H)
    h = jnp.maximum(0.0, z1)  # ReLU gate
    s = scores.affine(W2, b2, h, "W2")  # second affine layer (N, K)
    s, y = losses.check_scores_and_labels(s, y)
    data_loss, ds = _softmax_backward(s, y)
    reg_loss = reg * (jnp.sum(W1**2) + jnp.sum(W2**2))
    loss = data_loss + reg_loss
    # backward
    dW2 = _matmul(ds.T, h)  # second affine layer
    db2 = jnp.sum(ds, axis=0)
    dh = _matmul(ds, W2)  # (N, K) @ (K, H): upstream gradient into the hidden layer
    dz1 = jnp.where(z1 > 0.0, dh, 0.0)  # ReLU gate: pass where open, else 0
    dW1 = _matmul(dz1.T, x)  # first affine layer
    db1 = jnp.sum(dz1, axis=0)
    dW1 = dW1 + 2.0 * reg * W1  # forks: regulariser branches add
    dW2 = dW2 + 2.0 * reg * W2
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# The hand-written backward pass of each (model, loss), by the names of ``scores.MODELS`` and
# ``losses.LOSSES``: ``(params, x, y, reg, **options) -> (loss, grads)``, taking the options
# the loss's registry entry lists (e.g. ``margin``). The gradient checks (lib.model_check)
# compare each against jax.grad and finite differences; a pair without an entry is checked
# with jax.grad only.
BACKPROP: dict[tuple[str, str], Callable[..., tuple[Array, dict[str, Array]]]] = {
    ("linear", "softmax"): linear_softmax,
    ("linear", "hinge"): linear_hinge,
    ("two_layer", "softmax"): two_layer_softmax,
}
