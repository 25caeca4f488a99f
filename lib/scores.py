"""Score functions: map a batch of inputs to class scores, and their initialisers.

Conventions follow the notes: a linear classifier is ``f(x) = W x + b`` with
``W`` of shape ``(K, D)`` (one row per class), so a batch ``x`` of shape
``(N, D)`` gives scores ``x @ W.T + b`` of shape ``(N, K)``.

Every score function is pure and jittable; the shape checks below look only at
``.shape`` / ``.ndim`` so they also run on tracers under ``jit`` / ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lib.types import Array, Params, PRNGKey, Scalar

__all__ = [
    "MODELS",
    "PRECISION",
    "Model",
    "affine",
    "check_params",
    "dropout_mask",
    "get",
    "get_init",
    "init_linear",
    "init_two_layer",
    "linear",
    "model",
    "sigmoid_neuron",
    "two_layer",
]


# Every float32 matrix product in lib/ asks for full float32 precision. It is JAX's
# default on a CPU; on recent NVIDIA GPUs JAX's default is TF32 (10-bit mantissa inputs)
# and on TPUs bfloat16 passes, which would make the same code give other numbers there.
PRECISION = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------
# Input checks (Python-level, shapes only).
# --------------------------------------------------------------------------


def check_params(params: Params, keys: tuple[str, ...], model: str) -> None:
    """Raises ValueError unless ``params`` is a dict holding ``keys``."""
    if not isinstance(params, Mapping) or any(k not in params for k in keys):
        have = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(
            f"{model} params must be a dict with keys {list(keys)}, got {have}; "
            f"build them with scores.init_{model}(...)."
        )


def _check_affine(w: Array, b: Array, x: Array, name: str = "W") -> None:
    """Checks that ``x @ w.T + b`` is well-formed; raises ValueError otherwise."""
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (K, D), got shape {tuple(w.shape)}.")
    if b.shape != (w.shape[0],):
        raise ValueError(
            f"bias for {name} must have shape ({w.shape[0]},) to match {name} of "
            f"shape {tuple(w.shape)}, got {tuple(b.shape)}."
        )
    if x.ndim != 2:
        raise ValueError(
            f"x must be 2-D of shape (N, D) = (batch, features), got shape "
            f"{tuple(x.shape)}; reshape it, e.g. x.reshape(len(x), -1) for images "
            "or x[None, :] for a single example."
        )
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} features (shape {tuple(x.shape)}) but {name} "
            f"expects {w.shape[1]} (shape {tuple(w.shape)}); initialise the "
            f"params with num_features={x.shape[1]} or flatten/preprocess x to "
            f"{w.shape[1]} features."
        )


def affine(w: Array, b: Array, x: Array, name: str = "W") -> Array:
    """Checked affine layer ``x w^T + b``: x (N, D), w (K, D), b (K,) -> (N, K)."""
    x = jnp.asarray(x)
    _check_affine(w, b, x, name)
    # x @ w.T computed as (w x^T)^T: the same products, but under vmap over w (a sweep's
    # trials, an ensemble's members) XLA's CPU backend then reads the stacked weights as
    # one (M*K, D) operand where they lie; with w on the right it made a transposed copy of
    # them at every step (~7% of a 32-trial sweep, experiments.bench --workload=sweep).
    return jax.lax.dot_general(w, x, (((1,), (1,)), ((), ())), precision=PRECISION).T + b


# --------------------------------------------------------------------------
# Linear classifier.
# --------------------------------------------------------------------------


def init_linear(
    key: PRNGKey,
    num_features: int,
    num_classes: int,
    *,
    scale: float = 1e-3,
    dtype=jnp.float32,
) -> Params:
    """Small random weights and zero biases for a linear classifier.

    ``W ~ scale * N(0, 1)`` of shape ``(K, D)``, ``b = 0`` of shape ``(K,)``.

    Args:
      key: a PRNG key.
      num_features: D, the input dimension.
      num_classes: K, the number of classes.
      scale: standard deviation of the weights (the notes use 0.001).
      dtype: floating dtype of the parameters (float64 for gradient checks).

    Returns:
      ``{"W": (K, D), "b": (K,)}``.
    """
    if num_features < 1 or num_classes < 1:
        raise ValueError(
            f"num_features and num_classes must be >= 1, got {num_features} and {num_classes}."
        )
    w = scale * jax.random.normal(key, (num_classes, num_features), dtype)
    return {"W": w, "b": jnp.zeros((num_classes,), dtype)}


def linear(params: Params, x: Array) -> Array:
    """Linear class scores ``s = x W^T + b``.

    Args:
      params: ``{"W": (K, D), "b": (K,)}``.
      x: inputs of shape ``(N, D)``.

    Returns:
      Scores of shape ``(N, K)``.
    """
    check_params(params, ("W", "b"), "linear")
    return affine(params["W"], params["b"], x)


# --------------------------------------------------------------------------
# Two-layer ReLU network with inverted dropout.
# --------------------------------------------------------------------------


def init_two_layer(
    key: PRNGKey,
    num_features: int,
    hidden: int,
    num_classes: int,
    *,
    scale: float | None = None,
    dtype=jnp.float32,
) -> Params:
    """He-initialised two-layer ReLU network.

    ``W1 ~ N(0, 1) * sqrt(2 / D)``, ``W2 ~ N(0, 1) * sqrt(2 / H)`` (the notes'
    recommendation for ReLU units), biases zero.

    Args:
      key: a PRNG key.
      num_features: D.
      hidden: H, the number of hidden units.
      num_classes: K.
      scale: if given, use this fixed standard deviation for both weight
        matrices instead of the ``sqrt(2 / fan_in)`` rule.
      dtype: floating dtype of the parameters.

    Returns:
      ``{"W1": (H, D), "b1": (H,), "W2": (K, H), "b2": (K,)}``.
    """
    if min(num_features, hidden, num_classes) < 1:
        raise ValueError(
            "num_features, hidden and num_classes must be >= 1, got "
            f"{num_features}, {hidden}, {num_classes}."
        )
    k1, k2 = jax.random.split(key)
    s1 = np.sqrt(2.0 / num_features) if scale is None else scale
    s2 = np.sqrt(2.0 / hidden) if scale is None else scale
    return {
        "W1": s1 * jax.random.normal(k1, (hidden, num_features), dtype),
        "b1": jnp.zeros((hidden,), dtype),
        "W2": s2 * jax.random.normal(k2, (num_classes, hidden), dtype),
        "b2": jnp.zeros((num_classes,), dtype),
    }


def _check_dropout(dropout: Scalar) -> None:
    """Range-checks a concrete dropout rate; traced rates pass through."""
    if isinstance(dropout, jax.core.Tracer):
        return
    d = np.asarray(dropout)
    if d.ndim != 0:
        raise ValueError(
            f"dropout must be a scalar, got shape {d.shape}; vmap over the rate "
            "instead of passing an array."
        )
    if not 0.0 <= float(d) < 1.0:
        raise ValueError(
            f"dropout is the probability of dropping a unit and must be in "
            f"[0, 1), got {float(d)}; use e.g. 0.5 (0.0 disables dropout)."
        )


def dropout_mask(key: PRNGKey, shape: tuple[int, ...], dropout: Scalar, dtype=jnp.float32) -> Array:
    """Inverted-dropout mask: ``(U < p) / p`` with keep-probability ``p = 1 - dropout``.

    Its expectation is 1, so no rescaling is needed at test time. ``dropout``
    may be a traced value; ``dropout = 0`` gives a mask of exactly ones.
    """
    _check_dropout(dropout)
    p = jnp.asarray(1.0 - dropout, dtype)
    keep = jax.random.uniform(key, shape, dtype) < p
    # where() rather than keep / p so that p = 0 (traced) gives 0, not nan.
    return jnp.where(keep, 1.0 / p, jnp.zeros((), dtype)).astype(dtype)


def two_layer(
    params: Params,
    x: Array,
    key: PRNGKey | None = None,
    dropout: Scalar = 0.0,
) -> Array:
    """Two-layer ReLU network scores ``s = W2 max(0, W1 x + b1) + b2``.

    Args:
      params: ``{"W1": (H, D), "b1": (H,), "W2": (K, H), "b2": (K,)}``.
      x: inputs of shape ``(N, D)``.
      key: PRNG key for dropout; ``None`` means no dropout (evaluation).
      dropout: probability of dropping a hidden unit (may be traced). Ignored
        when ``key`` is None.

    Returns:
      Scores of shape ``(N, K)``.
    """
    check_params(params, ("W1", "b1", "W2", "b2"), "two_layer")
    h = jax.nn.relu(affine(params["W1"], params["b1"], x, "W1"))
    if key is not None:  # key is a Python-level switch; dropout itself may be traced
        h = h * dropout_mask(key, h.shape, dropout, h.dtype)
    return affine(params["W2"], params["b2"], h, "W2")


# --------------------------------------------------------------------------
# The notes' 2-D sigmoid neuron.
# --------------------------------------------------------------------------


def sigmoid_neuron(w: Array, x: Array) -> Array:
    """The notes' neuron ``f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))``.

    Args:
      w: weights and bias, shape ``(3,)``.
      x: a 2-D input, shape ``(2,)``.

    Returns:
      The scalar output f.
    """
    w, x = jnp.asarray(w), jnp.asarray(x)
    if w.shape != (3,) or x.shape != (2,):
        raise ValueError(
            f"sigmoid_neuron expects w of shape (3,) = [w0, w1, bias] and x of "
            f"shape (2,), got {tuple(w.shape)} and {tuple(x.shape)}."
        )
    return 1.0 / (1.0 + jnp.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))


# --------------------------------------------------------------------------
# The registry of models.
# --------------------------------------------------------------------------


class Model(NamedTuple):
    """A registry entry (``MODELS``): how the trainer and the gradient checks use a model.

    Attributes:
      scores: the score function ``(params, x) -> (N, K)``, as used in evaluation.
      init: the initialiser ``(key, num_features, *sizes, num_classes, dtype=) -> params``.
      sizes: the names of the sizes ``init`` takes between D and K (``Setup`` fields), e.g.
        ``("hidden",)``.
      dropout: whether ``scores`` takes ``key`` and ``dropout`` (inverted dropout in training).
      kinks: ``(params, x) -> tuple of arrays`` whose zeros are the kinks of the scores (the
        ReLU pre-activations), or None for smooth scores; gradient checks read it.
      figure: ``(leaf, kind)``: the weights whose rows live in input space, drawn as images
        after training image data (``kind``: ``"templates"``, one class per row, or
        ``"first_layer"``); None draws none.
    """

    scores: Callable[..., Array]
    init: Callable[..., Params]
    sizes: tuple[str, ...] = ()
    dropout: bool = False
    kinks: Callable[[Params, Array], tuple[Array, ...]] | None = None
    figure: tuple[str, str] | None = None


def _relu_inputs(params: Params, x: Array) -> tuple[Array, ...]:
    return (affine(params["W1"], params["b1"], x, "W1"),)


# Adding a model is one entry here (its scores, init and sizes); the trainer, the gradient
# checks and the ensembles look every model up by name in this table.
MODELS: dict[str, Model] = {
    "linear": Model(linear, init_linear, figure=("W", "templates")),
    "two_layer": Model(
        two_layer, init_two_layer, ("hidden",), True, _relu_inputs, ("W1", "first_layer")
    ),
}


def model(name: str) -> Model:
    """The registry entry of model ``name``; ValueError lists the valid names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def get(name: str) -> Callable[..., Array]:
    """Score function by name (a key of ``MODELS``)."""
    return model(name).scores


def get_init(name: str) -> Callable[..., Params]:
    """Initialiser by model name (a key of ``MODELS``)."""
    return model(name).init
