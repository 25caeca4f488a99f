"""Readers of the data sets' sources, and ``READERS``, the registry `data.load` uses.

Each reader turns one data set's source (scikit-learn's bundled digits, the CIFAR-10
python pickles, the MNIST IDX files, a seeded spiral draw, a ``.npz`` file) into raw
train / val / test splits with class names and an image shape (`RawData`); lib/data.py
then validates, centres and scales them (``data.from_splits``). The folder layouts and
default splits are documented in lib/data.py's module docstring, next to ``data.load``.
Adding a data set is one reader and one entry in ``READERS``.

This module does not import lib/data.py (which imports it): a reader that must validate
arrays before splitting them (npz) gets ``data.check_arrays`` in its `Request`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging
from sklearn import datasets as sk_datasets
from sklearn import model_selection

from lib import data_files
from lib.data_files import read_idx

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (or a mirror of the MNIST database)"
DATA_DIR_HINT = "set --config.dataset.data_dir=/path/to/data"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


class RawData(NamedTuple):
    """What a reader returns: unpreprocessed splits and what the rows mean.

    Attributes:
        splits: "train", "val", "test" -> (x, y); x (N, D) or image-shaped, y (N,) integers.
        class_names: one name per class.
        image_shape: the shape one row reshapes to (HWC for colour images).
        label_values: the label value each class stood for in the files, when the files'
            labels were not 0..K-1 (class k is ``label_values[k]``); None: class k is k.
    """

    splits: Splits
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    label_values: tuple[Any, ...] | None = None


class Request(NamedTuple):
    """What `data.load` asks a reader for.

    Attributes:
        data_dir: the folder or file to read, ``~`` expanded; None when not given.
        seed: seed for random splits and draws.
        num_val: validation size; None for the data set's default.
        check_arrays: ``data.check_arrays``, ``(x, y, *, name) -> (x float32 (N, D), y
            int32 (N,))``, for arrays a reader must validate before it splits them.
    """

    data_dir: str | None
    seed: int
    num_val: int | None
    check_arrays: Callable[..., tuple[np.ndarray, np.ndarray]]


class Reader(NamedTuple):
    """A registry entry (``READERS``): how `data.load` gets one data set.

    Attributes:
        read: ``(Request) -> RawData``.
        needs_data_dir: whether the data set is read from files under ``data_dir`` (then
            `data.load` refuses a missing ``data_dir`` before calling ``read``).
    """

    read: Callable[[Request], RawData]
    needs_data_dir: bool = False


def _split(x, y, size, seed, what):
    """Splits ``size`` rows off (x, y): stratified when possible, else random."""
    if not 1 <= size < len(y):
        raise ValueError(
            f"Cannot split {size} {what} examples off {len(y)}; "
            f"choose num_val (or the split size) in [1, {len(y) - 1}]."
        )
    try:
        xa, xb, ya, yb = model_selection.train_test_split(
            x, y, test_size=size, random_state=seed, stratify=y
        )
    except ValueError as e:  # a class too small to stratify
        logging.warning("Stratified %s split impossible (%s); using a random split.", what, e)
        xa, xb, ya, yb = model_selection.train_test_split(x, y, test_size=size, random_state=seed)
    return (xa, ya), (xb, yb)


def _tail_split(x, y, num_val, default):
    """Train = all but the last num_val rows, val = the last num_val (as the course code).

    num_val defaults to ``max(1, min(default, n // 10))``: the standard split on the
    real files, and a tenth of a small fixture.
    """
    nv = max(1, min(default, len(y) // 10)) if num_val is None else num_val
    if nv >= len(y):
        raise ValueError(
            f"num_val={nv} leaves no training data out of {len(y)}; use num_val < {len(y)}."
        )
    return {"train": (x[:-nv], y[:-nv]), "val": (x[-nv:], y[-nv:])}


def _missing(what, path, missing, files, where):
    found = (
        f"{path!r} lacks {', '.join(missing)}"
        if os.path.isdir(path)
        else f"folder {path!r} does not exist"
    )
    return FileNotFoundError(
        f"{what} data not found: {found}; expected a folder holding {', '.join(files)}. {where}"
    )


def read_digits(req: Request) -> RawData:
    """scikit-learn's bundled 8x8 digits, stratified 60/20/20 (val: ``num_val``)."""
    bunch = sk_datasets.load_digits()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int32)
    n_test = round(0.2 * len(y))
    rest, test = _split(x, y, n_test, req.seed, "test")
    val_size = n_test if req.num_val is None else req.num_val
    train, val = _split(*rest, val_size, req.seed + 1, "val")
    splits = {"train": train, "val": val, "test": test}
    return RawData(splits, tuple(str(c) for c in bunch.target_names), (8, 8))


def read_cifar10(req: Request) -> RawData:
    """The "CIFAR-10 python version" folder (or its parent); val = last ``num_val`` rows."""
    where = (
        f"Get the 'CIFAR-10 python version' from {CIFAR10_URL} and extract it "
        "(tar xzf cifar-10-python.tar.gz) to a folder holding data_batch_1..5, "
        f"then {DATA_DIR_HINT}."
    )
    data_dir = req.data_dir
    nested = os.path.join(data_dir, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(data_dir, "data_batch_1")) and os.path.isdir(nested):
        data_dir = nested  # the parent of the extracted folder was given
    missing = [f for f in _CIFAR_FILES if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise _missing("CIFAR-10", data_dir, missing, _CIFAR_FILES, where)
    names = data_files.read_cifar_names(os.path.join(data_dir, "batches.meta"), where)
    k = len(names)
    batch = data_files.read_cifar_batch
    parts = [batch(os.path.join(data_dir, f), k, where) for f in _CIFAR_FILES[:5]]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    splits = dict(
        _tail_split(x, y, req.num_val, 1000),
        test=batch(os.path.join(data_dir, "test_batch"), k, where),
    )
    return RawData(splits, names, (32, 32, 3))


def _find_idx(data_dir, fname):
    for cand in (
        fname,
        fname + ".gz",
        fname.replace("-idx", ".idx"),
        fname.replace("-idx", ".idx") + ".gz",
    ):
        path = os.path.join(data_dir, cand)
        if os.path.isfile(path):
            return path
    return None


def read_mnist(req: Request) -> RawData:
    """The four MNIST IDX files (optionally ``.gz``); val = last ``num_val`` rows."""
    where = (
        f"Download the four IDX files (gzipped or not) from {MNIST_URL} into "
        f"one folder, then {DATA_DIR_HINT}."
    )
    paths = {f: _find_idx(req.data_dir, f) for f in _MNIST_FILES}
    missing = [f for f, p in paths.items() if p is None]
    if missing:
        raise _missing("MNIST", req.data_dir, missing, _MNIST_FILES, where)

    def pair(images, labels):
        x = read_idx(paths[images], _IDX_IMAGES_MAGIC)
        y = read_idx(paths[labels], _IDX_LABELS_MAGIC)
        if len(x) != len(y) or not len(y):
            raise ValueError(
                f"{paths[images]} holds {len(x)} images but {paths[labels]} holds "
                f"{len(y)} labels; re-download the matching pair."
            )
        if y.max() > 9:
            raise ValueError(
                f"{paths[labels]} holds labels up to {y.max()}, expected the digits 0..9: "
                "the file is corrupt, re-download it."
            )
        return x, y.astype(np.int32)

    x, y = pair(*_MNIST_FILES[:2])
    splits = dict(_tail_split(x, y, req.num_val, 5000), test=pair(*_MNIST_FILES[2:]))
    return RawData(splits, tuple(str(i) for i in range(10)), tuple(x.shape[1:]))


def spiral_points(
    key: jax.Array, points_per_class: int = 100, num_classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The notes' spiral (CS231n "minimal neural network case study"), as numpy arrays.

    Class j: r = linspace(0, 1, N), t = linspace(4j, 4(j+1), N) + 0.2 * randn,
    x = r * [sin t, cos t]; rows are ordered by class, as in the notes.
    """
    n, k = points_per_class, num_classes
    noise = np.asarray(jax.random.normal(key, (k, n)), np.float64) * 0.2
    r = np.linspace(0.0, 1.0, n)
    t = np.stack([np.linspace(j * 4, (j + 1) * 4, n) for j in range(k)]) + noise
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=-1).reshape(k * n, 2)
    return x.astype(np.float32), np.repeat(np.arange(k, dtype=np.int32), n)


def read_spiral(req: Request) -> RawData:
    """Three-class spirals, 300 points per split (val: ``num_val``), each its own draw."""
    keys = jax.random.split(jax.random.key(req.seed), 6)  # (draw, shuffle) per split
    sizes = {"train": 300, "val": 300 if req.num_val is None else req.num_val, "test": 300}
    splits = {}
    for i, (split, size) in enumerate(sizes.items()):
        x, y = spiral_points(keys[2 * i], points_per_class=-(-size // 3))
        perm = np.asarray(jax.random.permutation(keys[2 * i + 1], len(y)))[:size]
        splits[split] = (x[perm], y[perm])
    return RawData(splits, ("0", "1", "2"), (2,))


def _npz_keys(path, arrays):
    """Refuses a .npz without its training arrays, or with half of a split."""
    for k in ("x_train", "y_train"):
        if k not in arrays:
            raise ValueError(f"{path} lacks {k!r} (keys: {sorted(arrays)}). {data_files.NPZ_HOW}")
    for s in ("val", "test"):
        if (f"x_{s}" in arrays) != (f"y_{s}" in arrays):
            raise ValueError(
                f"{path} has only one of x_{s}/y_{s}; give both or neither "
                f"(then {s} is split off the training arrays)."
            )


def _labels(path, name, y):
    """One split's labels as int64 (integers, or whole-number floats) or as strings."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(
            f"{path}: {name} has shape {y.shape}; expected 1-D labels (N,) "
            "(use y.reshape(-1), or y.argmax(-1) for one-hot labels)."
        )
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y)) & (np.abs(y) <= 2**53)
        if not whole.all():
            raise ValueError(
                f"{path}: {name} holds {int((~whole).sum())} labels that are not whole "
                f"numbers (e.g. {y[~whole][0].item()!r}); labels name classes: give integers "
                "(or whole-number floats such as 1.0, 2.0)."
            )
    elif y.dtype.kind == "U":
        return y
    elif y.dtype.kind not in "iub":
        raise ValueError(
            f"{path}: {name} has dtype {y.dtype}; labels must be integers or strings "
            "(convert with y.astype(np.int64))."
        )
    return y.astype(np.int64)


def _check_class_names(path, ys, names):
    """With class_names, every label must index them."""
    for s, y in ys.items():
        if y.dtype.kind == "U" or (len(y) and (y.min() < 0 or y.max() >= len(names))):
            seen = np.unique(y)
            raise ValueError(
                f"{path}: y_{s} holds labels {seen[:6].tolist()}, but with class_names "
                f"({len(names)} names) the labels must be their indices 0..{len(names) - 1}; "
                "relabel them, or drop class_names (then the label values become classes "
                "0..K-1 in sorted order)."
            )


def _npz_classes(path, ys, names):
    """Every split's labels as classes 0..K-1, and the label value of each class, as
    scikit-learn's ``classes_`` (None when the labels already are 0..K-1, or when
    ``names`` are given: then the labels index them)."""
    ys = {s: _labels(path, f"y_{s}", y) for s, y in ys.items()}
    if len({y.dtype.kind == "U" for y in ys.values()}) > 1:
        raise ValueError(f"{path}: some splits' labels are strings, others numbers; use one.")
    if names is not None:
        _check_class_names(path, ys, names)
        return ys, None
    values = np.unique(ys["train"])
    for s in ("val", "test"):
        unseen = np.setdiff1d(ys[s], values) if s in ys else ()
        if len(unseen):
            raise ValueError(
                f"{path}: y_{s} holds labels {unseen[:6].tolist()} that never occur in "
                "y_train, so no model can learn them; move examples of them into "
                f"x_train/y_train, or drop them from x_{s}/y_{s}."
            )
    if values.dtype.kind != "U" and np.array_equal(values, np.arange(len(values))):
        return ys, None
    return {s: np.searchsorted(values, y) for s, y in ys.items()}, tuple(values.tolist())


def read_npz(req: Request) -> RawData:
    """Your own arrays in a ``.npz`` file; val and test split off train when absent.

    Without ``class_names``, labels that are not 0..K-1 (1..3, strings) become classes
    0..K-1 in sorted order of their values, and name them (`RawData.label_values`).
    """
    path, arrays = data_files.read_npz_arrays(req.data_dir)
    _npz_keys(path, arrays)
    present = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    names = None
    if "class_names" in arrays:
        names = tuple(str(c) for c in np.asarray(arrays["class_names"]).reshape(-1))
    ys, values = _npz_classes(path, {s: arrays[f"y_{s}"] for s in present}, names)
    given = {}
    for s in present:
        try:
            given[s] = req.check_arrays(arrays[f"x_{s}"], ys[s], name=s)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    x, y = given["train"]
    splits = {}
    n_split = max(1, round(0.2 * len(y)))
    if "x_test" in arrays:
        splits["test"] = given["test"]
    else:
        (x, y), splits["test"] = _split(x, y, n_split, req.seed, "test")
    if "x_val" in arrays:
        splits["val"] = given["val"]
    else:
        (x, y), splits["val"] = _split(
            x, y, n_split if req.num_val is None else req.num_val, req.seed + 1, "val"
        )
    splits["train"] = (x, y)
    if names is None:
        names = tuple(str(v) for v in (values or range(len(np.unique(ys["train"])))))
    return RawData(splits, names, tuple(np.shape(arrays["x_train"])[1:]), values)


# Adding a data set is one entry here (its reader, and whether it needs data_dir);
# `data.load` looks every data set up by name in this table, in this order.
READERS: dict[str, Reader] = {
    "digits": Reader(read_digits),
    "cifar10": Reader(read_cifar10, needs_data_dir=True),
    "mnist": Reader(read_mnist, needs_data_dir=True),
    "spiral": Reader(read_spiral),
    "npz": Reader(read_npz, needs_data_dir=True),
}
