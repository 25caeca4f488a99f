"""Gradient checks of the library's models: jax.grad and lib.backprop against finite differences.

A model is looked up by name in ``scores.MODELS`` (its scores, initialiser, sizes and
kinks), a loss in ``losses.LOSSES`` (its function, options and kinks) and the matching
hand-written backward pass, where there is one, in ``backprop.BACKPROP``; the generic
machinery (float64 centred differences, relative errors, grades) is ``lib.gradcheck``.
Adding a model or a loss to those registries makes it checkable here with no change to
this module.
"""

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lib import backprop, gradcheck, losses, scores
from lib.gradcheck import DEFAULT_CHUNK_SIZE, DEFAULT_H, GradFn, GradReport, KinksFn, LossFn
from lib.types import Array, Params, PRNGKey, Scalar


class Objective(NamedTuple):
    """A model's loss on fixed data and everything needed to check its gradients.

    Attributes:
      loss: params -> mean data loss + ``losses.l2_penalty(params, reg)``.
      grad_fns: name -> params -> grads: ``jax.grad`` and, where there is one,
        the matching hand-written ``lib.backprop`` function.
      kinks: params -> arguments of every max(0, .) (ReLU pre-activations,
        hinge margins of the wrong classes), or None for a smooth objective.
    """

    loss: LossFn
    grad_fns: dict[str, GradFn]
    kinks: KinksFn | None


def _entries(model: str, loss: str) -> tuple[scores.Model, losses.Loss]:
    """The registry entries of ``model`` and ``loss``; ValueError names the valid ones."""
    if model not in scores.MODELS:
        raise ValueError(f"Unknown model {model!r}; valid names are {', '.join(scores.MODELS)}.")
    if loss not in losses.LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; valid names are {', '.join(losses.LOSSES)}.")
    return scores.MODELS[model], losses.LOSSES[loss]


def make_objective(
    model: str, loss: str, x: Array, y: Array, reg: Scalar, *, margin: Scalar = 1.0
) -> Objective:
    """The loss, gradient functions and kinks of ``model`` + ``loss`` on (x, y).

    ``x`` is cast to float64 (as numpy, so it stays float64 inside the checks). The loss's
    options (e.g. ``margin``) reach the loss, its kinks and the backprop function alike:
    each gets only the ones its ``losses.LOSSES`` entry lists.
    """
    entry, loss_entry = _entries(model, loss)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int32)
    given = {"margin": margin}  # every option a loss may take; each gets the ones it lists
    options = {k: v for k, v in given.items() if k in loss_entry.options}

    def loss_fn(params):
        s = entry.scores(params, x)
        return losses.data_loss(loss, s, y, **options) + losses.l2_penalty(params, reg)

    grad_fns = {"jax.grad": jax.grad(loss_fn)}
    bp = backprop.BACKPROP.get((model, loss))
    if bp is not None:
        grad_fns[f"backprop.{bp.__name__}"] = lambda p: bp(p, x, y, reg, **options)[1]
    return Objective(loss_fn, grad_fns, _kinks_fn(entry, loss_entry, x, y, options))


def _kinks_fn(
    entry: scores.Model, loss_entry: losses.Loss, x: np.ndarray, y: np.ndarray, options: dict
) -> KinksFn | None:
    """params -> the model's kinks (ReLU pre-activations) and the loss's kinks of the scores
    (hinge margins of the wrong classes); None when neither has any."""
    if entry.kinks is None and loss_entry.kinks is None:
        return None

    def kinks(params):
        out = () if entry.kinks is None else tuple(entry.kinks(params, x))
        if loss_entry.kinks is not None:
            out += (loss_entry.kinks(entry.scores(params, x), y, **options),)
        return out

    return kinks


def _init_params(
    model: str, key: PRNGKey, num_features: int, num_classes: int, sizes: Mapping[str, int]
) -> Params:
    """Float64 params of ``model`` from its ``Model.init``, with the sizes it names (e.g.
    ``hidden``) taken from ``sizes``."""
    entry = scores.model(model)
    missing = [name for name in entry.sizes if name not in sizes]
    if missing:
        raise ValueError(f"model {model!r} needs the sizes {missing}; got {sorted(sizes)}.")
    dims = [sizes[name] for name in entry.sizes]
    return entry.init(key, num_features, *dims, num_classes, dtype=jnp.float64)


def check_model(
    model: str,
    loss: str,
    x: Array,
    y: Array,
    reg: Scalar,
    *,
    num_classes: int,
    hidden: int = 100,
    margin: Scalar = 1.0,
    seed: int = 0,
    num_checks: int = 500,
    max_full_params: int = 5000,
    h: float = DEFAULT_H,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    steps: int = 0,
    learning_rate: float = 1e-2,
) -> tuple[GradReport, ...]:
    """Checks jax.grad and lib.backprop for a float64 model on (x, y): freshly
    initialised, or after ``steps`` steps of gradient descent (``learning_rate``) on the
    objective, where the weights are no longer tiny (the notes: problems can hide at
    initialisation).

    A full check when the model has at most ``max_full_params`` parameters, else
    a sparse check of ``num_checks`` coordinates (at least one per leaf).
    """
    if np.ndim(x) != 2:
        raise ValueError(f"x must be (N, D), got shape {np.shape(x)}; flatten images first.")
    init_key, check_key = jax.random.split(jax.random.key(seed))
    obj = make_objective(model, loss, x, y, reg, margin=margin)
    with jax.enable_x64(True):
        sizes = {"hidden": hidden}
        params = _init_params(model, init_key, x.shape[1], num_classes, sizes)
        if steps > 0:
            step = lambda _, p: jax.tree.map(
                lambda w, g: w - learning_rate * g, p, jax.grad(obj.loss)(p)
            )
            params = jax.jit(lambda p: jax.lax.fori_loop(0, steps, step, p))(params)
        size = ravel_pytree(params)[0].size
        sparse = {} if size <= max_full_params else {"num_checks": num_checks, "key": check_key}
        return gradcheck.check(
            obj.loss, obj.grad_fns, params, kinks=obj.kinks, h=h, chunk_size=chunk_size, **sparse
        )
