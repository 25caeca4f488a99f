"""Gradient checks: centered finite differences and relative error, in float64.

The notes' recipe: compare the analytic gradient with the centered difference

    df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / 2h

by the relative error |a - n| / max(|a|, |n|), in double precision, and grade it
(> 1e-2 wrong; 1e-2..1e-4 uncomfortable; 1e-4..1e-7 fine only for objectives
with kinks; <= 1e-7 good). Coordinates where the +h / -h evaluations straddle a
kink (an argument of some max(0, .) changes sign) are flagged and excluded from
the grade; every other coordinate of a kinked objective is smooth over its
[x - h, x + h] and is graded strictly, as for a smooth objective.

Every coordinate perturbation is one row of a ``jax.lax.map`` over flat
coordinate indices of ``ravel_pytree(params)``, vmapped in chunks of
``chunk_size`` so memory stays bounded, all in one jitted program.
"""

import functools
from typing import Callable, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lib import backprop, losses, scores
from lib.types import Array, Params, PRNGKey, Scalar

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

# Grade labels, from best to worst.
GOOD = "good"
OK_WITH_KINKS = "ok with kinks"
TOO_HIGH = "too high"  # 1e-7 < err <= 1e-4 for an objective without kinks
KINKS_ONLY = "kinks only"  # every checked coordinate of the leaf crossed a kink
UNCOMFORTABLE = "uncomfortable"
WRONG = "wrong"
_SEVERITY = {GOOD: 0, KINKS_ONLY: 1, OK_WITH_KINKS: 1, TOO_HIGH: 2, UNCOMFORTABLE: 3, WRONG: 4}

LossFn = Callable[[Params], Array]
GradFn = Callable[[Params], Params]
KinksFn = Callable[[Params], Array]


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


# ----------------------------------------------------------------- finite differences


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
    indices: Optional[np.ndarray] = None,
    *,
    h: float = DEFAULT_H,
    kinks: Optional[KinksFn] = None,
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
    """Checks that every leaf is floating point; casts them to float64 (under x64)."""
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
    return jax.tree_util.keystr(path, simple=True, separator="/") or "params"


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
    grad_fns: Union[GradFn, Mapping[str, GradFn]],
    params: Params,
    *,
    num_checks: Optional[int] = None,
    key: Optional[PRNGKey] = None,
    kinks: Optional[KinksFn] = None,
    has_kinks: Optional[bool] = None,
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
        if num_checks is None:
            indices = None
        elif key is None:
            raise ValueError(
                "a sparse check (num_checks given) needs a PRNG key. Fix: pass "
                "key=jax.random.key(seed)."
            )
        else:
            indices = select_coordinates(key, params64, num_checks)
        indices, fd, crossed, resolution = finite_differences(
            f, params64, indices, h=h, kinks=kinks, chunk_size=chunk_size
        )
        reports = []
        for name, grad_fn in grad_fns.items():
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
            analytic = np.asarray(ravel_pytree(grads)[0])[indices]
            both_tiny = np.maximum(np.abs(analytic), np.abs(fd)) <= resolution
            err = np.where(both_tiny, 0.0, _elementwise_relative_error(analytic, fd))
            round_off = np.abs(analytic - fd) <= resolution
            reports.append(
                GradReport(
                    name,
                    _leaf_reports(
                        _leaf_layout(params64),
                        indices,
                        err,
                        np.abs(analytic - fd),
                        crossed,
                        round_off,
                        lenient,
                    ),
                )
            )
    return tuple(reports)


def _leaf_reports(layout, indices, err, abs_err, crossed, round_off, lenient):
    leaves = []
    graded_err = np.where(round_off, 0.0, err)
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
    f: LossFn, grad_fns: Union[GradFn, Mapping[str, GradFn]], params: Params, **kwargs
) -> tuple[GradReport, ...]:
    """``check`` of every coordinate."""
    return check(f, grad_fns, params, num_checks=None, **kwargs)


def sparse_check(
    f: LossFn,
    grad_fns: Union[GradFn, Mapping[str, GradFn]],
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


# ----------------------------------------------------------------- model objectives

MODELS = ("linear", "two_layer")
LOSSES = ("softmax", "hinge")
# backprop function for each (model, loss), where lib.backprop has one
_BACKPROP = {
    ("linear", "softmax"): "linear_softmax",
    ("linear", "hinge"): "linear_hinge",
    ("two_layer", "softmax"): "two_layer_softmax",
}


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
    kinks: Optional[KinksFn]


def make_objective(
    model: str, loss: str, x: Array, y: Array, reg: Scalar, *, margin: Scalar = 1.0
) -> Objective:
    """The loss, gradient functions and kinks of ``model`` + ``loss`` on (x, y).

    ``x`` is cast to float64 (as numpy, so it stays float64 inside the checks).
    """
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; valid names are {', '.join(MODELS)}.")
    if loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; valid names are {', '.join(LOSSES)}.")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int32)
    score_fn = scores.linear if model == "linear" else scores.two_layer

    def data_loss(s):
        if loss == "softmax":
            return losses.softmax_cross_entropy(s, y)
        return losses.multiclass_hinge(s, y, margin)

    def loss_fn(params):
        return data_loss(score_fn(params, x)) + losses.l2_penalty(params, reg)

    grad_fns = {"jax.grad": jax.grad(loss_fn)}
    if (model, loss) in _BACKPROP:
        name = _BACKPROP[model, loss]
        bp = getattr(backprop, name)
        extra = {"margin": margin} if loss == "hinge" else {}
        grad_fns[f"backprop.{name}"] = lambda p: bp(p, x, y, reg, **extra)[1]

    def kinks(params):
        out = []
        if model == "two_layer":  # ReLU pre-activations x W1^T + b1
            out.append(scores.affine(params["W1"], params["b1"], x, "W1"))
        if loss == "hinge":  # margins s_j - s_y + margin of the wrong classes j != y
            s = score_fn(params, x)
            s_y = jnp.take_along_axis(s, y[:, None], axis=1)
            wrong = np.arange(s.shape[1])[None, :] != y[:, None]
            out.append(jnp.where(wrong, s - s_y + margin, 1.0))
        return tuple(out)

    has_kinks = model == "two_layer" or loss == "hinge"
    return Objective(loss_fn, grad_fns, kinks if has_kinks else None)


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
        if model == "two_layer":
            params = scores.init_two_layer(
                init_key, x.shape[1], hidden, num_classes, dtype=jnp.float64
            )
        else:
            params = scores.init_linear(init_key, x.shape[1], num_classes, dtype=jnp.float64)
        if steps > 0:
            step = lambda _, p: jax.tree.map(
                lambda w, g: w - learning_rate * g, p, jax.grad(obj.loss)(p)
            )
            params = jax.jit(lambda p: jax.lax.fori_loop(0, steps, step, p))(params)
        size = ravel_pytree(params)[0].size
        sparse = {} if size <= max_full_params else {"num_checks": num_checks, "key": check_key}
        return check(
            obj.loss, obj.grad_fns, params, kinks=obj.kinks, h=h, chunk_size=chunk_size, **sparse
        )
