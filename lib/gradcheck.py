"""Gradient checks: analytic gradients against centered differences, graded in float64.

The notes' recipe: compare the analytic gradient ``a`` with the centered difference
``n`` (``lib.finite_diff``) by the relative error |a - n| / max(|a|, |n|), in double
precision, and grade it (> 1e-2 wrong; 1e-2..1e-4 uncomfortable; 1e-4..1e-7 fine only
for objectives with kinks; <= 1e-7 good). Coordinates where the +h / -h evaluations
straddle a kink (an argument of some max(0, .) changes sign) are flagged and excluded
from the grade; every other coordinate of a kinked objective is smooth over its
[x - h, x + h] and is graded strictly, as for a smooth objective.

This module owns the relative error, the grades, the per-leaf and per-function reports
(``LeafReport``, ``GradReport``, ``format_report``), the choice of coordinates for a
sparse check (``select_coordinates``) and the checks themselves (``check``,
``full_check``, ``sparse_check``). The differences are computed by ``lib.finite_diff``;
its public names (``numerical_grad``, ``finite_differences``, ``FiniteDifferences``,
``DEFAULT_H``, ``DEFAULT_CHUNK_SIZE``, ``RESOLUTION_ULPS``) are re-exported here, so
``gradcheck.numerical_grad(f, params, h=1e-5)`` keeps working. The library's models
(``scores.MODELS`` with ``losses.LOSSES``) are checked through this by ``lib.model_check``.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# The finite-difference core: its public names are this module's too (`X as X` re-exports
# the two unused here); `_name` and `_to_float64` are shared helpers.
from lib.finite_diff import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_H,
    FiniteDifferences,
    KinksFn,
    LossFn,
    _name,
    _to_float64,
    finite_differences,
)
from lib.finite_diff import RESOLUTION_ULPS as RESOLUTION_ULPS  # noqa: PLC0414
from lib.finite_diff import numerical_grad as numerical_grad  # noqa: PLC0414
from lib.types import Array, Params, PRNGKey

# Grade labels, from best to worst.
GOOD = "good"
OK_WITH_KINKS = "ok with kinks"
TOO_HIGH = "too high"  # 1e-7 < err <= 1e-4 for an objective without kinks
KINKS_ONLY = "kinks only"  # every checked coordinate of the leaf crossed a kink
UNCOMFORTABLE = "uncomfortable"
WRONG = "wrong"
_SEVERITY = {GOOD: 0, KINKS_ONLY: 1, OK_WITH_KINKS: 1, TOO_HIGH: 2, UNCOMFORTABLE: 3, WRONG: 4}

GradFn = Callable[[Params], Params]


class LeafReport(NamedTuple):
    """The check of one parameter leaf against one analytic gradient.

    Attributes:
      name: the leaf's path in the params pytree, e.g. ``"W1"``.
      max_rel_error: max relative error over the checked coordinates that did
        not cross a kink (NaN if all of them did).
      grade: ``grade(err, has_kinks)`` with err the max relative error over the
        coordinates that differ by more than the finite difference's resolution.
      num_checked: coordinates of this leaf compared.
      num_kinks: of those, how many crossed a kink (excluded from the grade).
      num_tiny: of those, how many have a relative error above 1e-7 although
        the two gradients agree to within the finite difference's resolution
        ``RESOLUTION_ULPS * eps * |f| / 2h``: round-off, reported in
        ``max_rel_error`` but not graded.
      kink_rel_error: max relative error over the kink-crossing coordinates
        (NaN if there were none); informative only.
      max_abs_error: max |analytic - numerical| over the same coordinates as
        ``max_rel_error``: about 1e-11 means float64 round-off on a near-zero
        gradient rather than a bug.
    """

    name: str
    max_rel_error: float
    grade: str
    num_checked: int
    num_kinks: int
    num_tiny: int
    kink_rel_error: float
    max_abs_error: float


class GradReport(NamedTuple):
    """The check of one analytic gradient function: one ``LeafReport`` per leaf."""

    name: str
    leaves: tuple[LeafReport, ...]

    @property
    def grade(self) -> str:
        """The worst leaf grade."""
        return max((l.grade for l in self.leaves), key=_SEVERITY.__getitem__)


def grade(rel_err: float, has_kinks: bool = False) -> str:
    """Grades a relative error by the notes' thresholds.

    ``> 1e-2`` wrong; ``(1e-4, 1e-2]`` uncomfortable; ``(1e-7, 1e-4]`` "ok with
    kinks" if the objective has kinks, else "too high"; ``<= 1e-7`` good. NaN is
    wrong.
    """
    rel_err = float(rel_err)
    if not rel_err <= 1e-2:  # also catches NaN
        return WRONG
    if rel_err > 1e-4:
        return UNCOMFORTABLE
    if rel_err > 1e-7:
        return OK_WITH_KINKS if has_kinks else TOO_HIGH
    return GOOD


def relative_error(a: Params, b: Params) -> Array:
    """max over entries (and over leaves) of |a - b| / max(|a|, |b|), 0 where both are 0.

    Computed in float64 when the inputs are float64. Works on arrays and on
    pytrees of the same structure and shapes; NaN anywhere gives NaN.
    """
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    if tree_a != tree_b:
        raise ValueError(
            f"relative_error needs two pytrees of the same structure; got "
            f"{tree_a} and {tree_b}. Fix: compare gradients of the same params."
        )
    if not leaves_a:
        raise ValueError("relative_error got empty pytrees; pass at least one array.")
    for i, (x, z) in enumerate(zip(leaves_a, leaves_b)):
        if jnp.shape(x) != jnp.shape(z):
            raise ValueError(
                f"relative_error: leaf {i} has shapes {jnp.shape(x)} and "
                f"{jnp.shape(z)}; they must match. Fix: compare like with like."
            )
    with jax.enable_x64(True):
        per_leaf = [
            jnp.max(_elementwise_relative_error(jnp.asarray(x), jnp.asarray(z)), initial=0.0)
            for x, z in zip(leaves_a, leaves_b)
        ]
        return functools.reduce(jnp.maximum, per_leaf)


def _elementwise_relative_error(a, b):
    """|a - b| / max(|a|, |b|) with 0 where both are 0 (works for jnp and np)."""
    xp = jnp if isinstance(a, jax.Array) or isinstance(b, jax.Array) else np
    den = xp.maximum(xp.abs(a), xp.abs(b))
    safe = xp.where(den == 0, 1, den)
    return xp.where(den == 0, 0, xp.abs(a - b) / safe)


def _leaf_layout(params) -> list[tuple[str, int, int]]:
    """(name, start, size) of every leaf in the ``ravel_pytree`` vector."""
    layout, start = [], 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        size = int(np.size(leaf))
        layout.append((_name(path), start, size))
        start += size
    return layout


# ----------------------------------------------------------------- full and sparse checks


def select_coordinates(key: PRNGKey, params: Params, num_checks: int) -> np.ndarray:
    """Sorted flat indices (into ``ravel_pytree(params)``) of ``num_checks`` coordinates.

    One random coordinate from every non-empty leaf, the rest uniformly without
    replacement from all coordinates; all coordinates when ``num_checks`` >= their
    number.
    """
    layout = [entry for entry in _leaf_layout(params) if entry[2] > 0]
    total = sum(size for _, _, size in layout)
    if (
        isinstance(num_checks, bool)
        or not isinstance(num_checks, (int, np.integer))
        or num_checks < len(layout)
    ):
        raise ValueError(
            f"num_checks must be an integer >= the number of parameter "
            f"leaves ({len(layout)}) so every leaf is checked; got "
            f"{num_checks!r}. Fix: raise num_checks."
        )
    if num_checks >= total:
        return np.arange(total, dtype=np.int32)
    key_leaves, key_rest = jax.random.split(key)
    offsets = jax.random.randint(key_leaves, (len(layout),), 0, np.array([s for _, _, s in layout]))
    first = np.array([start for _, start, _ in layout]) + np.asarray(offsets)
    perm = np.asarray(jax.random.permutation(key_rest, total))
    rest = perm[~np.isin(perm, first)][: num_checks - len(layout)]
    return np.sort(np.concatenate([first, rest])).astype(np.int32)


def check(
    f: LossFn,
    grad_fns: GradFn | Mapping[str, GradFn],
    params: Params,
    *,
    num_checks: int | None = None,
    key: PRNGKey | None = None,
    kinks: KinksFn | None = None,
    has_kinks: bool | None = None,
    h: float = DEFAULT_H,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[GradReport, ...]:
    """Checks analytic gradients of ``f`` against centered differences, in float64.

    The finite differences are computed once and compared with every function in
    ``grad_fns``; each is called on the float64 params and must return a pytree
    shaped like them (wrap a backprop function: ``lambda p: bp(p, x, y, reg)[1]``).

    Args:
      f: scalar loss of the params pytree (pure, jittable).
      grad_fns: one gradient function or a mapping name -> gradient function.
      params: the point to check at (cast to float64).
      num_checks: None for a full check, else a sparse check of that many random
        coordinates chosen by ``select_coordinates(key, ...)`` (needs ``key``).
      key: PRNG key for the sparse check.
      kinks: optional ``kinks(params) -> array`` (or pytree of arrays) of the
        arguments of every max(0, .) in ``f``; a coordinate whose +h / -h sign
        pattern differs crossed a kink and is excluded from the grade.
      has_kinks: whether the objective has kinks that ``kinks`` does not locate: its
        coordinates are then graded in the notes' lenient band for kinked objectives
        (1e-7..1e-4 "ok with kinks"). With ``kinks`` given, a coordinate that crossed one
        is reported apart and every other is graded strictly (the objective is smooth on
        its [x - h, x + h]), so this only matters without it. Default False.
      h: finite-difference step.
      chunk_size: perturbations evaluated together (memory bound).

    Returns:
      one ``GradReport`` per gradient function.
    """
    if callable(grad_fns):
        grad_fns = {"grad": grad_fns}
    if not grad_fns:
        raise ValueError("grad_fns is empty; pass at least one gradient function.")
    lenient = bool(has_kinks) and kinks is None
    with jax.enable_x64(True):
        params64 = _to_float64(params)
        indices = _check_indices(params64, num_checks, key)
        fd = finite_differences(f, params64, indices, h=h, kinks=kinks, chunk_size=chunk_size)
        layout = _leaf_layout(params64)
        return tuple(
            GradReport(name, _leaf_reports(layout, fd, _analytic(name, fn, params64, fd), lenient))
            for name, fn in grad_fns.items()
        )


def _check_indices(params64, num_checks, key) -> np.ndarray | None:
    """The flat coordinates a check compares: None (all) or a sparse selection."""
    if num_checks is None:
        return None
    if key is None:
        raise ValueError(
            "a sparse check (num_checks given) needs a PRNG key. Fix: pass "
            "key=jax.random.key(seed)."
        )
    return select_coordinates(key, params64, num_checks)


def _analytic(name, grad_fn, params64, fd: FiniteDifferences) -> np.ndarray:
    """``grad_fn(params64)`` at the coordinates of ``fd``, in float64; ValueError unless it
    is a pytree shaped like the params."""
    grads = _to_float64(grad_fn(params64))
    if jax.tree.structure(grads) != jax.tree.structure(params64) or any(
        jnp.shape(g) != jnp.shape(p)
        for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params64))
    ):
        raise ValueError(
            f"gradient function {name!r} returned a pytree not shaped "
            "like params. Fix: return grads only (not (loss, grads)), "
            "one array per parameter with its shape."
        )
    return np.asarray(ravel_pytree(grads)[0])[fd.indices]


def _leaf_reports(layout, fd: FiniteDifferences, analytic, lenient) -> tuple[LeafReport, ...]:
    """One ``LeafReport`` per (name, start, size) of ``layout``: the analytic gradient at
    ``fd.indices`` against the differences ``fd.values``."""
    indices, crossed, resolution = fd.indices, fd.crossed, fd.resolution
    both_tiny = np.maximum(np.abs(analytic), np.abs(fd.values)) <= resolution
    err = np.where(both_tiny, 0.0, _elementwise_relative_error(analytic, fd.values))
    abs_err = np.abs(analytic - fd.values)
    round_off = abs_err <= resolution
    graded_err = np.where(round_off, 0.0, err)
    leaves = []
    for name, start, size in layout:
        mask = (indices >= start) & (indices < start + size)
        clean, kinked = err[mask & ~crossed], err[mask & crossed]
        max_err = float(np.max(clean)) if clean.size else float("nan")
        max_abs = float(np.max(abs_err[mask & ~crossed])) if clean.size else float("nan")
        graded = float(np.max(graded_err[mask & ~crossed])) if clean.size else float("nan")
        leaves.append(
            LeafReport(
                name=name,
                max_rel_error=max_err,
                grade=grade(graded, lenient) if clean.size else KINKS_ONLY,
                num_checked=int(mask.sum()),
                num_kinks=int(kinked.size),
                num_tiny=int((mask & ~crossed & round_off & (err > 1e-7)).sum()),
                kink_rel_error=float(np.max(kinked)) if kinked.size else float("nan"),
                max_abs_error=max_abs,
            )
        )
    return tuple(leaves)


def full_check(
    f: LossFn, grad_fns: GradFn | Mapping[str, GradFn], params: Params, **kwargs
) -> tuple[GradReport, ...]:
    """``check`` of every coordinate."""
    return check(f, grad_fns, params, num_checks=None, **kwargs)


def sparse_check(
    f: LossFn,
    grad_fns: GradFn | Mapping[str, GradFn],
    params: Params,
    key: PRNGKey,
    num_checks: int,
    **kwargs,
) -> tuple[GradReport, ...]:
    """``check`` of ``num_checks`` random coordinates, at least one in every leaf."""
    return check(f, grad_fns, params, num_checks=num_checks, key=key, **kwargs)


def any_wrong(reports: Sequence[GradReport]) -> bool:
    """Whether any leaf of any report is graded "wrong"."""
    return any(leaf.grade == WRONG for r in reports for leaf in r.leaves)


def worse_than(reports: Sequence[GradReport], level: str) -> bool:
    """Whether any leaf of any report is graded worse than ``level`` (a grade label)."""
    return any(_SEVERITY[leaf.grade] > _SEVERITY[level] for r in reports for leaf in r.leaves)


LEGEND = """\
grade: the notes' thresholds on a leaf's max relative error |a - n| / max(|a|, |n|)
  good <= 1e-7 < too high (smooth objective) <= 1e-4 < uncomfortable <= 1e-2 < wrong
  (ok with kinks: 1e-7..1e-4 where kinks exist but could not be located; kinks only:
  every checked coordinate crossed a kink)
kinks: coordinates whose +h / -h evaluations straddle a kink of max(0, .): reported
  apart (kink rel err), not graded; every other coordinate is graded strictly
round-off: coordinates whose gradients agree within the finite difference's
  resolution (16 ulp(f) / 2h): not graded, though they count in max rel err"""


def format_report(reports: Sequence[GradReport]) -> str:
    """A readable table: one row per (gradient function, leaf)."""
    header = (
        "gradient",
        "leaf",
        "checked",
        "kinks",
        "round-off",
        "max rel err",
        "max abs err",
        "kink rel err",
        "grade",
    )
    rows = [header]
    for r in reports:
        for l in r.leaves:
            rows.append(
                (
                    r.name,
                    l.name,
                    str(l.num_checked),
                    str(l.num_kinks),
                    str(l.num_tiny),
                    f"{l.max_rel_error:.2e}",
                    f"{l.max_abs_error:.2e}",
                    f"{l.kink_rel_error:.2e}",
                    l.grade,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 1, 8) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
