"""Small files in the real CIFAR-10 (python pickles) and MNIST (IDX) formats, for tests.

``write_cifar(..., python2=True)`` writes the batches byte for byte as the real files are
laid out: Python 2's cPickle at protocol 2, every string a (SHORT_)BINSTRING (bytes on
``encoding="bytes"``) and numpy's ``_reconstruct`` named ``numpy.core.multiarray``.
"""

import gzip
import os
import pickle
import struct

import numpy as np

CIFAR_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


_RECONSTRUCT = np.zeros(0).__reduce__()[0]


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler: its opcodes are ours
    """Writes what Python 2's cPickle wrote for a CIFAR-10 batch (see the module docstring)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_string
    dispatch[bytes] = save_string

    def save_global(self, obj, name=None):
        if obj is not _RECONSTRUCT:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
        self.memoize(obj)
        return None


def _dump(obj, f, python2):
    if python2:
        _Python2Pickler(f, protocol=2).dump(obj)
    else:
        pickle.dump(obj, f, protocol=2)


def write_cifar(folder, *, bytes_keys, per_batch=4, num_test=3, seed=0, python2=False):
    """Writes a CIFAR-10 python-version folder; returns (train_data, train_labels, test...).

    ``python2``: the real files' layout (see the module docstring; its keys are bytes)."""
    rng = np.random.default_rng(seed)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    os.makedirs(folder, exist_ok=True)
    batches = []
    for i, fname in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        n = num_test if fname == "test_batch" else per_batch
        d = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        if i == 0:  # image 0: red 200 (except pixel (1, 2) = 7), green 10, blue 50
            d[0, :1024], d[0, 1024:2048], d[0, 2048:] = 200, 10, 50
            d[0, 1 * 32 + 2] = 7
        with open(os.path.join(folder, fname), "wb") as f:
            batch = {
                key("batch_label"): key(f"batch {i}"),
                key("labels"): labels,
                key("data"): d,
                key("filenames"): [key(f"{j}.png") for j in range(n)],
            }
            _dump(batch, f, python2)
        batches.append((d, np.array(labels)))
    names = [key(n) for n in CIFAR_NAMES]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        meta = {
            key("num_cases_per_batch"): per_batch,
            key("label_names"): names,
            key("num_vis"): 3072,
        }
        _dump(meta, f, python2)
    train = (
        np.concatenate([b[0] for b in batches[:5]]),
        np.concatenate([b[1] for b in batches[:5]]),
    )
    return train, batches[5]


def write_idx(path, array, magic, *, gz):
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", s) for s in array.shape)
    payload = header + np.asarray(array, np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path + (".gz" if gz else ""), "wb") as f:
        f.write(payload)


def write_mnist(folder, *, gz, n_train=12, n_test=3, rows=5, cols=4, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), x, 2051, gz=gz)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), y, 2049, gz=gz)
        out[prefix] = (x, y)
    return out
