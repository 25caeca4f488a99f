"""Data sets and preprocessing: arrays in, a validated, centred `Dataset` out.

This module owns the `Dataset`, the checks every split passes (`check_arrays`), `load` and
`from_splits` (validate, keep ``num_train``, centre, scale), the device form of pixel
rows (`Pixels`, `rows`, `preprocess`) and `to_images`. Reading each data set's files is
lib/data_formats.py's: `load` looks the name up in its registry, ``data_formats.READERS``.

Every data set comes back as flat float32 features and int32 labels, split
into train / val / test, after the notes' preprocessing:

    x <- (x - mean_train) * scale,     mean_train = mean of the TRAINING rows only

The bias stays a separate parameter ``b`` (no bias trick: no column of ones).
Training sets of integer pixels in [0, 255] (digits, CIFAR-10, MNIST) also keep their raw
uint8 rows (``Dataset.train_pixels``); training holds those on the device (`Pixels`) and
applies the same preprocessing to each minibatch after gathering it (`rows`), bit for bit
the float32 rows with a quarter of the memory traffic.
Nothing is downloaded at run time; files must already be on disk.

Data sets (``DATASETS``):

* ``digits``  -- scikit-learn's bundled 8x8 digits (1797 images, pixels 0..16),
  stratified 60/20/20 split drawn from ``seed``; ``image_shape=(8, 8)``.
* ``cifar10`` -- the "CIFAR-10 python version" folder (``cifar-10-batches-py``); images
  stored channel-major become HWC rows, as the course code does (``image_shape=(32, 32,
  3)``). Val = the last ``num_val`` training rows, default ``max(1, min(1000, n // 10))``.
  The batches are pickles, read without running code (lib/data_files.py).
* ``mnist``   -- the four IDX files (optionally ``.gz``); val = the last ``num_val``
  training rows, default ``max(1, min(5000, n // 10))``; ``image_shape`` from the header.
* ``spiral``  -- the notes' 2-D three-class spiral; 100 points per class in each split
  (val: ``num_val``), each split its own draw from ``seed``, shuffled.
* ``npz``     -- your own arrays: ``data_dir`` is a ``.npz`` file, or a folder
  holding exactly one ``.npz`` file, with ``x_train``, ``y_train`` and
  optionally ``x_val``/``y_val``, ``x_test``/``y_test`` (split off ``x_train``,
  stratified, 20% each, when absent) and ``class_names``. Labels: integers (or
  whole-number floats); without ``class_names``, values other than 0..K-1 (1..3, strings)
  become classes 0..K-1 in sorted order (``Dataset.label_values``). See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from lib import data_formats
from lib.data_formats import (  # noqa: F401  (re-exported: data's API before data_formats)
    CIFAR10_URL,
    MNIST_URL,
    read_idx,
    spiral_points,
)

# The names `load` takes, in the registry's order (adding one: `data_formats.READERS`).
DATASETS = tuple(data_formats.READERS)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / val / test splits, already preprocessed.

    Attributes:
        x_train, x_val, x_test: float32 (N, D) rows, ``(pixels - mean) * scale``.
        y_train, y_val, y_test: int32 (N,) labels in [0, num_classes).
        class_names: one name per class.
        image_shape: the shape one row reshapes to (HWC for colour images).
        mean: float32 (D,) training mean that was subtracted (zeros if not centred).
        name: the data set name, for messages.
        scale: the factor applied after centring.
        train_pixels: uint8 (N, D) raw training rows when every raw training value is an
            integer in [0, 255] (digits, CIFAR-10, MNIST), else None. Then
            ``(train_pixels - mean) * scale`` in float32 is ``x_train`` bit for bit, and
            training keeps these on the device instead (`Pixels`): a quarter of the memory
            and of the traffic of each minibatch gather.
        label_values: the label value in the files that each class stands for, when they
            were not 0..K-1 (an ``.npz`` labelled 1..3: class k is ``label_values[k]``, as
            scikit-learn's ``classes_``); None: class k was labelled k.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    mean: np.ndarray
    name: str = "dataset"
    scale: float = 1.0
    train_pixels: np.ndarray | None = None
    label_values: tuple[Any, ...] | None = None

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        """Whether each row is an image (H, W) or (H, W, C), not a plain feature vector."""
        return len(self.image_shape) >= 2

    def arrays(self) -> list[np.ndarray]:
        """Every split's x and y (what ``lib.distributed.check_same_on_all`` compares)."""
        return [self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test]

    def describe(self) -> str:
        shape = f" (image {self.image_shape})" if self.is_image else ""
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / "
            f"{len(self.y_test)} test, {self.num_features} features{shape}, "
            f"{self.num_classes} classes"
        )

    def to_images(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (or W's rows) as images of ``self.image_shape``."""
        return to_images(x, self.image_shape)


def to_images(x: Any, image_shape: Sequence[int]) -> np.ndarray:
    """Reshapes flat rows (N, D) to (N, *image_shape), e.g. (N, 32, 32, 3).

    Works for class-weight templates too: ``to_images(params["W"], shape)``.
    """
    x = np.asarray(x)
    image_shape = tuple(int(s) for s in image_shape)
    d = int(np.prod(image_shape))
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(
            f"to_images: x has shape {x.shape}, expected (N, {d}) rows "
            f"for image_shape {image_shape}; pass the data set's own "
            "image_shape (dataset.image_shape)."
        )
    return x.reshape((x.shape[0],) + image_shape)


def check_arrays(
    x: Any, y: Any, *, name: str = "train", num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validates one split and returns (x float32 (N, D), y int32 (N,)).

    x may be 2-D (N, D) or image-shaped (N, H, W[, C]); it is flattened.

    y holds integers, or whole-number floats (1.0, 2.0), taken as their integers.

    Raises:
        ValueError: non-numeric x, labels that are not whole numbers, wrong ndim, empty,
            mismatched lengths, NaN/inf in x, labels outside [0, num_classes).
    """
    x, y = np.asarray(x), np.asarray(y)
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise ValueError(
            f"x_{name} has dtype {x.dtype}; it must hold real numbers "
            "(convert with x.astype(np.float32))."
        )
    if x.ndim < 2:
        raise ValueError(
            f"x_{name} has shape {x.shape}; expected (N, D) or image-shaped "
            "(N, H, W[, C]) (use x.reshape(-1, 1) for a single feature)."
        )
    if y.ndim != 1:
        raise ValueError(
            f"y_{name} has shape {y.shape}; expected 1-D integer labels (N,) "
            "(use y.reshape(-1), or y.argmax(-1) for one-hot labels)."
        )
    y = _integer_labels(y, name)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{name} has {x.shape[0]} rows but y_{name} has {y.shape[0]} "
            "labels; give one label per example."
        )
    if x.shape[0] == 0:
        raise ValueError(f"x_{name} is empty; give at least one example.")
    integers = np.issubdtype(x.dtype, np.integer)
    x = x.reshape(x.shape[0], -1).astype(np.float32)  # always a copy: ours to change
    if not integers and not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(
            f"x_{name} holds {bad} NaN/inf values; clean or impute them before loading."
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        k = "K" if num_classes is None else str(num_classes)
        raise ValueError(
            f"y_{name} has labels in [{lo}, {hi}], expected [0, {k}); "
            "relabel the classes as 0..K-1 "
            "(e.g. np.unique(y, return_inverse=True))."
        )
    return x, y.astype(np.int32)


def _integer_labels(y: np.ndarray, name: str) -> np.ndarray:
    """Integer labels as they are; whole-number floats as int64; anything else refused."""
    if np.issubdtype(y.dtype, np.integer):
        return y
    whole = np.issubdtype(y.dtype, np.floating) and bool(
        np.all(np.isfinite(y) & (y == np.round(y)) & (np.abs(y) <= 2**53))
    )
    if not whole:
        raise ValueError(
            f"y_{name} has dtype {y.dtype} and holds labels that are not whole numbers; "
            "labels must be integers (or whole-number floats such as 1.0, 2.0)."
        )
    return y.astype(np.int64)


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    num_val: int | None = None,
    num_train: int | None = None,
    center: bool = True,
    scale: float = 1.0,
) -> Dataset:
    """Loads a data set by name (see the module docstring) and preprocesses it.

    Args:
        name: one of ``DATASETS`` (the keys of ``data_formats.READERS``).
        data_dir: folder (cifar10, mnist) or .npz path/folder (npz); unused otherwise.
        seed: seed for the random splits (digits, npz) and the spiral draws.
        num_val: validation size (defaults per data set, see the module docstring);
            for npz it applies only when the val split is taken from the train arrays.
        num_train: keep only the first ``num_train`` training rows after splitting.
        center: subtract the training mean image (computed after ``num_train``).
        scale: multiply everything by this after centring (1.0 keeps pixel units).

    Returns:
        A `Dataset`.
    """
    reader = data_formats.READERS.get(name)
    if reader is None:
        valid = ", ".join(data_formats.READERS)
        raise ValueError(f"Unknown data set {name!r}; valid names are {valid}.")
    for arg, value in (("num_val", num_val), ("num_train", num_train)):
        if value is not None and (
            isinstance(value, bool) or value < 1 or not isinstance(value, (int, np.integer))
        ):
            raise ValueError(
                f"{arg}={value!r} must be a positive integer (or None for the default)."
            )
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"scale={scale!r} must be a positive finite number (1.0 keeps pixel units)."
        )
    if reader.needs_data_dir and data_dir is None:
        raise ValueError(
            f"Data set {name!r} reads files from disk but data_dir is not set; "
            f"{data_formats.DATA_DIR_HINT} (see lib/data.py for the expected layout)."
        )
    data_dir = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    raw = reader.read(data_formats.Request(data_dir, seed, num_val, check_arrays))
    return from_splits(
        name,
        raw.splits,
        raw.class_names,
        raw.image_shape,
        num_train=num_train,
        center=center,
        scale=scale,
        label_values=raw.label_values,
    )


def from_splits(
    name: str,
    splits: Mapping[str, tuple[Any, Any]],
    class_names: Sequence[Any],
    image_shape: Sequence[int],
    *,
    num_train: int | None = None,
    center: bool = True,
    scale: float = 1.0,
    label_values: Sequence[Any] | None = None,
) -> Dataset:
    """A `Dataset` from arrays: ``splits`` maps "train", "val", "test" to (x, y).

    Validates the splits (`check_arrays`), keeps the first ``num_train`` training rows (a
    class left with none is warned of), centres on the training mean and scales, as `load`.
    """
    k = len(class_names)
    checked = {}
    for split in ("train", "val", "test"):
        x, y = splits[split]
        checked[split] = check_arrays(x, y, name=split, num_classes=k)
    x_train, y_train = checked["train"]
    d = x_train.shape[1]
    for split in ("val", "test"):
        if checked[split][0].shape[1] != d:
            raise ValueError(
                f"x_{split} has {checked[split][0].shape[1]} features but x_train "
                f"has {d}; every split must have the same number of features."
            )
    if num_train is not None:
        if num_train > len(y_train):
            raise ValueError(
                f"num_train={num_train} but {name} has only {len(y_train)} training "
                f"examples after the split; use num_train <= {len(y_train)}."
            )
        checked["train"] = (x_train[:num_train].copy(), y_train[:num_train])
    _warn_empty_classes(name, checked["train"][1], class_names)
    pixels = _as_pixels(np.asarray(splits["train"][0])[: len(checked["train"][1])])
    if center:
        mean = checked["train"][0].mean(axis=0, dtype=np.float64).astype(np.float32)
    else:
        mean = np.zeros((d,), np.float32)
    # In place on check_arrays' own float32 copies: (x - mean) * scale without two more
    # copies of the training set (CIFAR-10's is 600 MB in float32); the same bits.
    for x, _ in checked.values():
        x -= mean
        x *= np.float32(scale)
    return Dataset(
        checked["train"][0],
        checked["train"][1],
        checked["val"][0],
        checked["val"][1],
        checked["test"][0],
        checked["test"][1],
        tuple(str(c) for c in class_names),
        tuple(int(s) for s in image_shape),
        mean,
        name,
        float(scale),
        pixels,
        None if label_values is None else tuple(label_values),
    )


def _warn_empty_classes(name: str, y_train: np.ndarray, class_names: Sequence[Any]) -> None:
    """A warning for each class with no training example (the model never sees it)."""
    for k in np.flatnonzero(np.bincount(y_train, minlength=len(class_names)) == 0):
        logging.warning(_EMPTY_CLASS, name, k, class_names[k])


_EMPTY_CLASS = (
    "%s: class %d (%s) has no training example, so the model cannot learn it; give it "
    "training examples, or leave it out of the labels and class_names"
)


def _as_pixels(x) -> np.ndarray | None:
    """Rows whose every value is an integer in [0, 255] (of any dtype) as uint8 (N, D), the
    form training keeps on the device; else None."""
    x = np.asarray(x)
    x = x.reshape(x.shape[0], -1)
    if x.min() < 0 or x.max() > 255:
        return None
    pixels = x.astype(np.uint8)  # truncates: equal to x only for integers
    if np.issubdtype(x.dtype, np.integer) or np.array_equal(pixels, x):
        return pixels
    return None


def preprocess(x, mean, scale):
    """The notes' preprocessing, ``(x - mean) * scale`` in float32, in numpy or in jax.

    The same float32 operations in the same order on both, so the rows computed on the
    device from `Pixels` are bitwise the rows computed here.
    """
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return (x - mean) * (scale if isinstance(scale, jax.Array) else np.float32(scale))


class Pixels(NamedTuple):
    """Rows kept on the device as uint8 pixels: row i means ``preprocess(raw[i], mean, scale)``.

    A training set of pixels (``Dataset.train_pixels``) goes to the device in this form
    (``train.to_device``). Each minibatch is gathered as 1 byte per feature and turned into
    float32 after the gather (`rows`), bitwise the float32 rows of ``Dataset.x_train``, with
    a quarter of the memory traffic (the random-row gather is bound by memory: on a 2-core
    CPU it took 28 ms of a CIFAR-sized epoch in float32, 15 ms in uint8).
    """

    raw: Any  # uint8 (N, D)
    mean: Any  # float32 (D,)
    scale: Any  # float32 ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.raw.shape


def rows(x, index=None):
    """float32 rows ``x[index]`` (all rows if ``index`` is None) of an array or of `Pixels`.

    ``index`` is an int array or a slice; integer indices must be in bounds (they are
    gathered without clamping, ``mode="promise_in_bounds"``).
    """
    if index is None:
        index = slice(None)

    def take(a):
        if isinstance(index, slice):
            return a[index]
        return jax.numpy.asarray(a).at[index].get(mode="promise_in_bounds")

    if isinstance(x, Pixels):
        return preprocess(take(x.raw), x.mean, x.scale)
    return take(x)
