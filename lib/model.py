"""The model a run trains, looked up by name: its parameters, scores, objective and
evaluation.

Every function here reads the registries (``scores.MODELS``, ``losses.LOSSES``), so a model
or a loss added there is trained, evaluated and ensembled with no other change. They take
the names and sizes they need (a ``settings.Setup`` provides them as attributes).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lib import losses, scores
from lib.types import Array, Params, PRNGKey


def init_params(key: PRNGKey, setup, dtype=jnp.float32) -> Params:
    """Fresh parameters of the model ``setup.model`` names, with its sizes from ``setup``
    (``num_features``, the ``Model.sizes`` it takes, ``num_classes``)."""
    m = scores.model(setup.model)
    sizes = [getattr(setup, name) for name in m.sizes]
    return m.init(key, setup.num_features, *sizes, setup.num_classes, dtype=dtype)


def num_params(setup) -> int:
    """Number of parameters of the model ``setup`` describes (shapes only; nothing runs)."""
    shapes = jax.eval_shape(lambda: init_params(jax.random.key(0), setup))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def predict(params: Params, x: Array, model: str) -> Array:
    """Class scores (N, K) of model ``model`` without dropout."""
    return scores.model(model).scores(params, x)


def data_loss(s: Array, y: Array, setup) -> Array:
    """The mean data loss ``setup.loss`` names, of scores ``s`` (its options from
    ``setup``, e.g. the hinge's ``margin``)."""
    options = {name: getattr(setup, name) for name in losses.loss(setup.loss).options}
    return losses.data_loss(setup.loss, s, y, **options)


def objective(
    params: Params,
    x: Array,
    y: Array,
    hparams,
    setup,
    key: PRNGKey | None = None,
    row_blocks: int = 1,
) -> Array:
    """Mean data loss + reg * sum(W**2); dropout when ``key`` is given and the model has it.

    ``row_blocks`` > 1 computes the scores of a model without dropout in that many equal row
    blocks (if the rows divide evenly): the same scores row by row, a speed choice
    (``train.ROW_BLOCKS``). The gradient of W is then summed block by block, so its last bits
    may differ.
    """
    m = scores.model(setup.model)
    if m.dropout:
        s = m.scores(params, x, key=key, dropout=hparams["dropout"])
    else:
        n = x.shape[0]
        parts = jnp.split(x, row_blocks) if row_blocks > 1 and n % row_blocks == 0 else [x]
        s = jnp.concatenate([m.scores(params, part) for part in parts])
    return data_loss(s, y, setup) + losses.l2_penalty(params, hparams["reg"])


def accuracy(params: Params, x: Array, y: Array, setup) -> Array:
    """Fraction of ``x`` whose highest score is the label ``y``."""
    return losses.accuracy(predict(params, x, setup.model), y)


def evaluate(params: Params, x: Array, y: Array, setup) -> dict[str, Array]:
    """Mean data loss (no regulariser, no dropout) and accuracy of ``params`` on (x, y)."""
    s = predict(params, x, setup.model)
    return {"loss": data_loss(s, y, setup), "accuracy": losses.accuracy(s, y)}
