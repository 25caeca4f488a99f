"""Losses on class scores: softmax cross-entropy, multiclass hinge, L2 penalty.

All data losses take scores ``s`` of shape ``(N, K)`` and integer labels ``y``
of shape ``(N,)`` and return the mean over the batch. Shapes and dtypes are
checked on entry (Python-level, so ``jit`` / ``vmap`` still work); labels are
range-checked only when they are concrete (not traced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lib.types import Array, Params, Scalar

__all__ = [
    "LOSSES",
    "Loss",
    "accuracy",
    "check_scores_and_labels",
    "data_loss",
    "get",
    "l2_penalty",
    "loss",
    "multiclass_hinge",
    "softmax_cross_entropy",
]


def check_scores_and_labels(s: Array, y: Array) -> tuple[Array, Array]:
    """Validates scores ``(N, K)`` and integer labels ``(N,)`` in ``[0, K)``.

    Returns:
      ``(s, y)`` as jax arrays.

    Raises:
      ValueError: wrong shapes, mismatched batch sizes, labels out of range
        (the range check runs only for concrete, non-traced labels).
      TypeError: non-integer labels or non-floating scores.
    """
    s, y = jnp.asarray(s), jnp.asarray(y)
    if s.ndim != 2:
        raise ValueError(
            f"scores must be 2-D of shape (N, K) = (batch, classes), got shape "
            f"{tuple(s.shape)}; for a single example use s[None, :]."
        )
    if not jnp.issubdtype(s.dtype, jnp.floating):
        raise TypeError(
            f"scores must be floating point, got dtype {s.dtype}; cast with s.astype(jnp.float32)."
        )
    if y.ndim != 1:
        raise ValueError(
            f"labels must be 1-D of shape (N,) holding class indices, got shape "
            f"{tuple(y.shape)}; if they are one-hot use y.argmax(-1)."
        )
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer class indices, got dtype {y.dtype}; cast "
            "with y.astype(jnp.int32) (or argmax one-hot labels)."
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"batch sizes differ: scores have {s.shape[0]} rows (shape "
            f"{tuple(s.shape)}) but labels have {y.shape[0]} (shape "
            f"{tuple(y.shape)}); pass one label per example."
        )
    if not isinstance(y, jax.core.Tracer) and y.size:
        y_np = np.asarray(y)
        lo, hi = int(y_np.min()), int(y_np.max())
        num_classes = s.shape[1]
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes}) for {num_classes} classes, "
                f"got values in [{lo}, {hi}]; check the label encoding or the "
                "model's num_classes."
            )
    return s, y


def _correct_class_scores(s: Array, y: Array) -> Array:
    """``s[i, y_i]`` for every row, shape ``(N,)``."""
    return jnp.take_along_axis(s, y[:, None], axis=1)[:, 0]


def softmax_cross_entropy(s: Array, y: Array) -> Array:
    """Mean softmax cross-entropy ``L_i = -s_{y_i} + log sum_j exp(s_j)``.

    The log-sum-exp subtracts the row maximum first, so scores of any magnitude
    give a finite loss.

    Args:
      s: scores ``(N, K)``.
      y: integer labels ``(N,)``.

    Returns:
      The scalar mean loss over the batch.
    """
    s, y = check_scores_and_labels(s, y)
    log_z = jax.nn.logsumexp(s, axis=-1)  # stable: max-shifted internally
    return jnp.mean(log_z - _correct_class_scores(s, y))


def multiclass_hinge(s: Array, y: Array, margin: Scalar = 1.0) -> Array:
    """Mean Weston-Watkins SVM loss ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)``.

    Args:
      s: scores ``(N, K)``.
      y: integer labels ``(N,)``.
      margin: the desired margin Delta (may be traced).

    Returns:
      The scalar mean loss over the batch.
    """
    s, y = check_scores_and_labels(s, y)
    margins = jnp.maximum(0.0, s - _correct_class_scores(s, y)[:, None] + margin)
    is_correct = jnp.arange(s.shape[1])[None, :] == y[:, None]
    margins = jnp.where(is_correct, 0.0, margins)  # the j = y_i term is skipped
    return jnp.mean(jnp.sum(margins, axis=1))


def _is_weight(path) -> bool:
    """True if the innermost dict key on ``path`` starts with ``"W"``."""
    for entry in reversed(path):
        if isinstance(entry, jax.tree_util.DictKey):
            return str(entry.key).startswith("W")
    return False


def l2_penalty(params: Params, reg: Scalar) -> Array:
    """L2 regularisation ``R = reg * sum_W sum(W**2)`` over weight leaves only.

    A leaf is a weight when its dict key starts with ``"W"`` (``W``, ``W1``,
    ``W2``, ...); biases are not penalised.

    Args:
      params: a pytree of dicts of arrays.
      reg: regularisation strength lambda (may be traced).

    Returns:
      The scalar penalty.

    Raises:
      ValueError: if no leaf is named ``W*`` (the penalty would silently be 0).
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    weights = [leaf for path, leaf in leaves if _is_weight(path)]
    if not weights:
        names = [jax.tree_util.keystr(path) for path, _ in leaves]
        raise ValueError(
            f"l2_penalty found no weight leaves (dict keys starting with 'W') in "
            f"params with leaves {names}; name weight matrices W, W1, W2, ..."
        )
    return reg * sum(jnp.sum(jnp.square(w)) for w in weights)


def accuracy(s: Array, y: Array) -> Array:
    """Fraction of rows whose highest score is the true class: ``mean(argmax s == y)``."""
    s, y = check_scores_and_labels(s, y)
    return jnp.mean(jnp.argmax(s, axis=-1) == y)


class Loss(NamedTuple):
    """A registry entry (``LOSSES``): a data loss and what it takes.

    Attributes:
      fn: ``(s, y, **options) -> mean loss``.
      options: the keyword arguments ``fn`` takes besides (s, y), e.g. ``("margin",)``.
      kinks: ``(s, y, **options) -> array`` whose zeros are the loss's kinks (the hinge's
        margins of the wrong classes), or None for a smooth loss; gradient checks read it.
    """

    fn: Callable[..., Array]
    options: tuple[str, ...] = ()
    kinks: Callable[..., Array] | None = None


def _hinge_margins(s: Array, y: Array, margin: Scalar = 1.0) -> Array:
    """``s_j - s_y + margin`` for the wrong classes j != y (1 for the right one: no kink)."""
    s_y = jnp.take_along_axis(s, y[:, None], axis=1)
    wrong = jnp.arange(s.shape[1])[None, :] != y[:, None]
    return jnp.where(wrong, s - s_y + margin, 1.0)


# Adding a loss is one entry here; the trainer and the gradient checks look losses up by name.
LOSSES: dict[str, Loss] = {
    "softmax": Loss(softmax_cross_entropy),
    "hinge": Loss(multiclass_hinge, ("margin",), _hinge_margins),
}


def loss(name: str) -> Loss:
    """The registry entry of loss ``name``; ValueError lists the valid names."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def get(name: str) -> Callable[..., Array]:
    """Data loss by name (a key of ``LOSSES``); ValueError lists the valid ones."""
    return loss(name).fn


def data_loss(name: str, s: Array, y: Array, **options: Scalar) -> Array:
    """The mean data loss ``name`` of scores ``s``, given the options it takes (others are
    ignored, so a caller passes every option it has, e.g. ``margin``)."""
    entry = loss(name)
    return entry.fn(s, y, **{k: options[k] for k in entry.options})
