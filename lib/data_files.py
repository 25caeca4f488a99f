"""The data sets' files as checked numpy arrays, for files nobody vouches for: no code runs
from a data file, and every broken one is one ``ValueError`` naming the file and the fix.

* CIFAR-10's python pickles go through a restricted unpickler (`read_cifar_pickle`) that
  builds only what the real batches hold: dicts, lists, bytes, str, ints, and numpy arrays
  (numpy's ``_reconstruct`` as numpy pickles an array, ``ndarray``, ``dtype``; and
  ``_codecs.encode`` to latin-1, as Python 3 writes bytes at protocol 2). Any other global a
  pickle names (``os.system``, ``builtins.open``, ...) is refused before it is called. A
  batch must then hold uint8 pixels (n, 3072) and n labels of the classes batches.meta
  names (`read_cifar_batch`, `read_cifar_names`).
* IDX files, optionally gzipped (`read_idx`, MNIST's format).
* ``.npz`` archives (`read_npz_arrays`): every member's checksum first, then
  ``np.load(..., allow_pickle=False)``, so an object array (which would unpickle) is refused.

What the arrays mean across files (splits, classes) is lib/data_formats.py's, which imports
this module.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

# numpy's array-reconstruction function (numpy._core.multiarray._reconstruct; numpy.core in
# numpy 1, which the real CIFAR-10 files name), found without importing either by name.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]


def one_line(error: BaseException) -> str:
    """``Type: message`` of ``error`` on one line (whitespace runs collapsed, at most 200
    characters of the message)."""
    message = re.sub(r"\s+", " ", str(error)).strip()[:200]
    return f"{type(error).__name__}: {message}"


def _empty_array(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct`` as numpy's pickles call it: an empty array that the pickle then
    fills (``ndarray.__setstate__``, which checks the data against the shape)."""
    if cls is not np.ndarray or shape != (0,):
        raise pickle.UnpicklingError(f"_reconstruct({cls!r}, {shape!r}) is not a numpy array")
    return _RECONSTRUCT(cls, shape, dtype)


def _latin1(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode(text, "latin1")``, as Python 3's pickler writes bytes at protocol 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is called only to make bytes")
    return text.encode("latin1")


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds only the types of a CIFAR-10 batch (``_CIFAR_GLOBALS``, plus what pickle's
    own opcodes make: dicts, lists, tuples, bytes, str, ints)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a CIFAR-10 batch never holds (refused, not run)"
            ) from None


def read_cifar_pickle(path: str, fix: str) -> Any:
    """The object in the CIFAR-10 pickle ``path`` (bytes keys and strings, as the real files
    hold them); anything a batch cannot hold, or a broken file, is refused.

    Raises:
        ValueError: ``path`` is not a CIFAR-10 batch (the message ends with ``fix``).
    """
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 (a broken or hostile file: whatever it raised)
        raise ValueError(f"{path} is not a CIFAR-10 batch ({one_line(e)}); {fix}") from None


def _read_cifar_pickle(path, where):
    """One CIFAR-10 pickle (read without running code) as a dict with str keys."""
    d = read_cifar_pickle(path, f"re-extract the python version. {where}")
    if not isinstance(d, Mapping):
        raise ValueError(  # noqa: TRY004  (a bad file: ValueError, as always)
            f"{path} holds a {type(d).__name__}, expected a dict: not a CIFAR-10 batch. {where}"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_labels(path, labels, n, num_classes, where):
    """A batch's labels as int64 (n,), each in [0, num_classes)."""
    try:
        y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except ValueError:  # a ragged list
        y = None
    if y is None or y.shape != (n,) or not (n == 0 or np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"{path}: 'labels' is not a list of {n} integers. {where}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{path} holds labels in [{y.min()}, {y.max()}], expected 0..{num_classes - 1} "
            f"(batches.meta names {num_classes} classes): the file is corrupt. {where}"
        )
    return y


def read_cifar_batch(path: str, num_classes: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file as (x uint8 (n, 3072) HWC rows, labels int64 (n,)), its
    labels in [0, num_classes).

    Raises:
        ValueError: not a CIFAR-10 batch (the message ends with ``where``).
    """
    d = _read_cifar_pickle(path, where)
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path} lacks 'data'/'labels' (keys: {sorted(map(str, d))}). {where}")
    data = d["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        raise ValueError(f"{path}: 'data' is not an array of uint8 pixels. {where}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data {data.shape}, expected (n, 3072). {where}")
    labels = _cifar_labels(path, d["labels"], len(data), num_classes, where)
    # channel-major (n, 3, 32, 32) -> HWC (n, 32, 32, 3), then flat rows.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(data), -1)
    return x, labels


def read_cifar_names(path: str, where: str) -> tuple[str, ...]:
    """The class names in CIFAR-10's batches.meta (a list of bytes or str)."""
    meta = _read_cifar_pickle(path, where)
    names = meta.get("label_names")
    if not (isinstance(names, list) and names and all(isinstance(n, (bytes, str)) for n in names)):
        raise ValueError(f"{path}: 'label_names' is not a list of names. {where}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_idx(path: str, magic: int) -> np.ndarray:
    """Reads one IDX file (optionally gzipped, then its name ends in ``.gz``) of unsigned
    bytes.

    Format: big-endian int32 magic (2051 images / 2049 labels: its last byte is the number of
    dimensions, its third, 0x08, means uint8), one big-endian uint32 size per dimension,
    then the values.

    Raises:
        ValueError: the file is damaged, truncated, compressed without ``.gz`` or of the
            other kind (its magic number).
    """
    redownload = "re-download it from the MNIST database page (a .gz file must end in .gz)"
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} cannot be read ({one_line(e)}); {redownload}") from None
    ndim = magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is too short ({len(raw)} bytes) to be an IDX file; {redownload}")
    found = int(np.frombuffer(raw[:4], ">i4")[0])
    if found != magic:
        kind = "images" if magic == 2051 else "labels"
        raise ValueError(
            f"{path} has IDX magic number {found}, expected {magic} ({kind}); the file is "
            f"corrupt, mislabelled or still compressed: {redownload}"
        )
    dims = tuple(int(v) for v in np.frombuffer(raw[4 : 4 + 4 * ndim], ">u4"))
    body = raw[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise ValueError(
            f"{path}: the header says {dims} = {math.prod(dims)} values but the file holds "
            f"{len(body)}; the file is truncated or corrupt: {redownload}"
        )
    return np.frombuffer(body, np.uint8).reshape(dims)


NPZ_HOW = (
    "Save your arrays with np.savez(path, x_train=..., y_train=..., [x_val=..., "
    "y_val=..., x_test=..., y_test=..., class_names=...]) and set "
    "--config.dataset.data_dir to the .npz file (or a folder holding exactly one)."
)


def _npz_path(path: str) -> str:
    """The .npz file ``path`` names: itself, or the one .npz file in the folder ``path``."""
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".npz"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path!r} must hold exactly one .npz file, found "
                f"{found or 'none'}; point data_dir at the file. {NPZ_HOW}"
            )
        path = os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"npz data not found at {path!r}: expected a .npz file with x_train, y_train. {NPZ_HOW}"
        )
    return path


def read_npz_arrays(path: str) -> tuple[str, dict[str, np.ndarray]]:
    """(the file, its arrays by name) of the .npz file ``path`` or of the one in the folder
    ``path``; never unpickles.

    Raises:
        FileNotFoundError: no such file (or not exactly one in the folder).
        ValueError: not a readable .npz archive (damaged, truncated, a .npy file), or an
            array of Python objects.
    """
    path = _npz_path(path)
    resave = f"the file is damaged or truncated: save it again. {NPZ_HOW}"
    try:
        with zipfile.ZipFile(path) as archive:  # every member's CRC-32, before numpy reads
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"member {bad!r} fails its checksum")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(
                f"{path} holds an array of Python objects (dtype object), which is never "
                "loaded (unpickling it could run code); save numbers and strings only, e.g. "
                f"np.asarray(x, np.float32). {NPZ_HOW}"
            ) from None
        raise ValueError(
            f"{path} is not a readable .npz archive ({one_line(e)}); {resave}"
        ) from None
    except Exception as e:  # noqa: BLE001 (a broken file: whatever zipfile or numpy raised)
        raise ValueError(
            f"{path} is not a readable .npz archive ({one_line(e)}); {resave}"
        ) from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):  # bad input: every broken file is a ValueError
            raise ValueError(f"{path}: member {k!r} is not a numpy array; {resave}")  # noqa: TRY004
    return path, arrays
