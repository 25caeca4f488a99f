"""Centered finite differences in float64, chunked and vmapped, with the kinks each crossed.

The notes' centered difference of a scalar loss ``f`` at every (or a chosen) flat
coordinate ``i`` of ``ravel_pytree(params)``:

    df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / 2h

computed in double precision, with the step taken as the representable
(x_i + h) - (x_i - h). Every coordinate perturbation is one row of a ``jax.lax.map``
over flat coordinate indices, vmapped in chunks of ``chunk_size`` so memory stays
bounded, all in one jitted program. Alongside each difference come:

* whether the +h / -h evaluations straddle a kink (an argument of some max(0, .)
  changes sign), given a ``kinks(params)`` function that returns those arguments;
* the difference's resolution ``RESOLUTION_ULPS * eps * max|f(x +- h e_i)| / 2h``,
  the smallest derivative it can tell apart from round-off.

This module owns the defaults (``DEFAULT_H``, ``DEFAULT_CHUNK_SIZE``,
``RESOLUTION_ULPS``), the input checks and the float64 cast; comparing the
differences with analytic gradients (relative errors, grades, reports) is
``lib.gradcheck``, which re-exports the public names here.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lib.types import Array, Params

DEFAULT_H = 1e-5
DEFAULT_CHUNK_SIZE = 256
# A centered difference cannot resolve a derivative to better than about
# ulp(f) / 2h: f(x+h) - f(x-h) loses everything below f's last bits. Entries
# where both gradients are below RESOLUTION_ULPS * eps * |f| / 2h count as both
# zero (relative error 0), as the notes' formula does for exact zeros; entries
# that differ by less than it agree as far as finite differences can tell, so
# they are reported but not graded (a correct gradient with entries near 1e-6,
# from a pixel that barely varies, has relative errors near 1e-5 from round-off
# alone).
RESOLUTION_ULPS = 16

LossFn = Callable[[Params], Array]
KinksFn = Callable[[Params], Array]


def numerical_grad(
    f: LossFn, params: Params, h: float = DEFAULT_H, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Params:
    """Centered finite-difference gradient of a scalar ``f`` at ``params``, in float64.

    (f(x + h e_i) - f(x - h e_i)) / 2h for every coordinate i, with the step
    taken as the representable (x_i + h) - (x_i - h). ``f`` must be a pure,
    jittable function of the params pytree (jit caches on its identity).

    Returns:
      a float64 pytree shaped like ``params``.
    """
    with jax.enable_x64(True):
        params64 = _to_float64(params)
        fd = finite_differences(f, params64, h=h, chunk_size=chunk_size).values
        return ravel_pytree(params64)[1](jnp.asarray(fd))


class FiniteDifferences(NamedTuple):
    """Per-coordinate results, over flat indices of ``ravel_pytree(params)`` (numpy).

    Attributes:
      indices: the coordinates evaluated.
      values: their centered differences.
      crossed: whether the +h / -h evaluations straddle a kink there.
      resolution: ``RESOLUTION_ULPS * eps * max|f(x +- h e_i)| / 2h``, the
        smallest derivative the difference can resolve.
    """

    indices: np.ndarray
    values: np.ndarray
    crossed: np.ndarray
    resolution: np.ndarray


def finite_differences(
    f: LossFn,
    params: Params,
    indices: np.ndarray | None = None,
    *,
    h: float = DEFAULT_H,
    kinks: KinksFn | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> FiniteDifferences:
    """Centered differences of ``f`` at flat coordinates ``indices`` (None: all), in float64.

    With ``kinks`` (params -> arguments of every max(0, .)), also flags the
    coordinates where the sign pattern of the kinks differs between x + h e_i and
    x - h e_i: a kink was crossed.
    """
    with jax.enable_x64(True):
        params64, flat = _prepare(f, params, h, chunk_size)
        if indices is None:
            indices = np.arange(flat.size, dtype=np.int32)
        indices = np.asarray(indices)
        if (
            indices.ndim != 1
            or indices.size == 0
            or not np.issubdtype(indices.dtype, np.integer)
            or indices.min() < 0
            or indices.max() >= flat.size
        ):
            raise ValueError(
                f"indices must be a non-empty 1-D integer array of flat "
                f"coordinates in [0, {flat.size}); got {indices!r}. Fix: use "
                "select_coordinates(key, params, num_checks)."
            )
        if kinks is not None and not callable(kinks):
            raise TypeError(f"kinks must be a function params -> array, got {kinks!r}.")
        out = _central_differences(
            f, params64, jnp.asarray(indices, jnp.int32), h, kinks, chunk_size
        )
        return FiniteDifferences(indices, *map(np.asarray, out))


@functools.partial(jax.jit, static_argnames=("f", "kinks", "chunk_size"))
def _central_differences(f, params, indices, h, kinks, chunk_size):
    """Centered differences at ``indices``, kink-crossing flags and resolutions."""
    flat, unravel = ravel_pytree(params)

    def one(i):
        xp, xm = flat[i] + h, flat[i] - h
        plus, minus = unravel(flat.at[i].set(xp)), unravel(flat.at[i].set(xm))
        f_plus, f_minus = f(plus), f(minus)
        diff = (f_plus - f_minus) / (xp - xm)
        resolution = (
            RESOLUTION_ULPS
            * jnp.finfo(flat.dtype).eps
            * jnp.maximum(jnp.abs(f_plus), jnp.abs(f_minus))
            / (xp - xm)
        )
        if kinks is None:
            return diff, jnp.zeros((), bool), resolution
        crossed = jnp.any(_kink_signs(kinks, plus) != _kink_signs(kinks, minus))
        return diff, crossed, resolution

    return jax.lax.map(one, indices, batch_size=min(chunk_size, indices.shape[0]))


def _kink_signs(kinks, params):
    leaves = jax.tree.leaves(kinks(params))
    return jnp.concatenate([jnp.sign(jnp.ravel(k)) for k in leaves])


def _prepare(f, params, h, chunk_size):
    """Validates the inputs; returns float64 params and their flat vector."""
    if isinstance(h, jax.core.Tracer) or not np.isscalar(h) and np.ndim(h) != 0:
        raise TypeError(
            f"h must be a concrete positive number, got {h!r}. "
            "Fix: pass a Python float such as h=1e-5."
        )
    if not (np.isfinite(h) and h > 0):
        raise ValueError(
            f"h must be positive and finite, got {h}. Fix: use a small "
            "step such as h=1e-5 (the notes' choice for float64)."
        )
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size must be a positive integer, got {chunk_size!r}. "
            f"Fix: e.g. chunk_size={DEFAULT_CHUNK_SIZE}."
        )
    params64 = _to_float64(params)
    out = jax.eval_shape(f, params64)
    if (
        not isinstance(out, jax.ShapeDtypeStruct)
        or out.shape != ()
        or not jnp.issubdtype(out.dtype, jnp.floating)
    ):
        raise ValueError(
            f"f must return a scalar floating-point loss, got {out}. Fix: "
            "reduce it, e.g. return the mean loss over the batch."
        )
    return params64, ravel_pytree(params64)[0]


def _to_float64(params):
    """Checks that every leaf is floating point; casts them to float64 (under x64).

    Also used by ``lib.gradcheck`` on the params and on the analytic gradients.
    """
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ValueError(
            "params has no array leaves; pass the pytree to check, e.g. {'W': W, 'b': b}."
        )
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params leaf {_name(path)!r} has dtype {dtype}; gradient checks "
                "need floating-point parameters. Fix: cast it with "
                ".astype(jnp.float64)."
            )
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)


def _name(path) -> str:
    """A leaf's path in the params pytree as ``"a/b"`` (``"params"`` for a bare array)."""
    return jax.tree_util.keystr(path, simple=True, separator="/") or "params"
