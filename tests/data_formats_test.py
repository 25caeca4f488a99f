"""Tests for lib/data_files.py and the readers of lib/data_formats.py against files nobody
vouches for: no code runs from a data file; every broken file is one line naming it (a
ValueError or FileNotFoundError, which the command line prints as ``error: ...`` with exit
status 2); labels that are not 0..K-1 become classes as scikit-learn's ``classes_``."""

import contextlib
import json
import os
import pickle
import shutil
import signal
import tempfile

import hypothesis
import numpy as np
from absl.testing import absltest, parameterized
from hypothesis import strategies as st

from lib import data, data_files
from tests.cli_test import run_in_process
from tests.fixtures import write_cifar, write_idx, write_mnist

ERRORS = (ValueError, FileNotFoundError)  # what lib/cli.py reports as one line, exit 2


def _tmpdir(test):
    path = tempfile.mkdtemp(prefix="data_formats_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class _CreatesAFile:
    """Unpickling this creates ``path`` (``open(path, "w")``): what a hostile file does."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsACommand:
    """Unpickling this runs ``touch path`` (``os.system``)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class SafeReadersTest(parameterized.TestCase):
    def assert_one_line(self, error, *parts):
        message = str(error)
        self.assertNotIn("\n", message)
        for part in parts:
            self.assertIn(part, message)

    @parameterized.named_parameters(
        ("open_in_a_batch", _CreatesAFile, "data_batch_2", "io.open"),
        ("os_system_in_a_batch", _RunsACommand, "data_batch_2", "system"),
        ("open_in_the_meta", _CreatesAFile, "batches.meta", "io.open"),
    )
    def test_a_cifar_pickle_that_would_create_a_file_is_refused(self, payload, name, named):
        folder = _tmpdir(self)
        write_cifar(folder, bytes_keys=True, python2=True)
        marker = os.path.join(folder, "created")
        hostile = pickle.dumps({b"data": payload(marker), b"labels": [0]}, protocol=2)
        # The payload is real: Python's own pickle.load runs it and creates the file.
        pickle.loads(hostile)
        self.assertTrue(os.path.exists(marker))
        os.remove(marker)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(hostile)
        with self.assertRaises(ValueError) as cm:
            data.load("cifar10", folder)
        self.assertFalse(os.path.exists(marker))
        self.assert_one_line(cm.exception, name, "is not a CIFAR-10 batch", named, "not run")

    def test_only_numpy_arrays_as_numpy_pickles_them(self):
        path = os.path.join(_tmpdir(self), "batch")
        recon = np.zeros(0).__reduce__()[0]

        class Huge:  # _reconstruct with a shape to allocate, not numpy's (0,)
            def __reduce__(self):
                return (recon, (np.ndarray, (10**12,), b"b"))

        class Rot13:  # _codecs.encode with a codec that is not latin-1
            def __reduce__(self):
                return (__import__("_codecs").encode, ("abc", "rot13"))

        for obj, said in ((Huge(), "is not a numpy array"), (Rot13(), "only to make bytes")):
            with open(path, "wb") as f:
                pickle.dump(obj, f, protocol=2)
            with self.assertRaisesRegex(ValueError, said):
                data_files.read_cifar_pickle(path, "fix")

    def test_an_npz_object_array_is_never_unpickled(self):
        folder = _tmpdir(self)
        marker = os.path.join(folder, "created")
        path = os.path.join(folder, "mine.npz")
        hostile = np.array([_CreatesAFile(marker), 1], dtype=object)
        np.savez(path, x_train=hostile, y_train=np.array([0, 1]))
        with self.assertRaises(ValueError) as cm:
            data.load("npz", path)
        self.assertFalse(os.path.exists(marker))
        self.assert_one_line(cm.exception, path, "array of Python objects", "np.asarray")
        # With pickles allowed, numpy would have run it: the file, not the check, is hostile.
        with np.load(path, allow_pickle=True) as z:
            z["x_train"]
        self.assertTrue(os.path.exists(marker))


def _cifar_batch(folder, name, **fields):
    """Rewrites CIFAR-10 batch ``name`` of ``folder`` with ``fields`` changed."""
    path = os.path.join(folder, name)
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch.update({k.encode(): v for k, v in fields.items()})
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


class BrokenFilesTest(parameterized.TestCase):
    """Each broken file: one line, naming the file and what to do."""

    def assert_refused(self, name, folder, file, *parts):
        with self.assertRaises(ERRORS) as cm:
            data.load(name, folder)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        for part in (file, *parts):
            self.assertIn(part, message)

    def test_cifar(self):
        folder = _tmpdir(self)
        write_cifar(folder, bytes_keys=True, python2=True)
        batch = os.path.join(folder, "data_batch_3")
        with open(batch, "rb") as f:
            whole = f.read()
        for cut in (whole[:0], whole[: len(whole) // 2]):  # empty, truncated
            with open(batch, "wb") as f:
                f.write(cut)
            self.assert_refused("cifar10", folder, "data_batch_3", "not a CIFAR-10", "re-extract")
        with open(batch, "wb") as f:
            f.write(whole)
        cases = {
            "(n, 3072)": {"data": np.zeros((4, 100), np.uint8)},
            "uint8 pixels": {"data": np.zeros((4, 3072), np.float32)},
            "labels in [0, 12]": {"labels": [0, 12, 1, 2]},
            "list of 4 integers": {"labels": [b"cat", 1, 2, 3]},
            "list of 4 integers ": {"labels": [0, 1, 2]},  # mismatched lengths
        }
        for said, fields in cases.items():
            _cifar_batch(folder, "data_batch_3", **fields)
            self.assert_refused("cifar10", folder, "data_batch_3", said.strip())
            with open(batch, "wb") as f:
                f.write(whole)
        with open(os.path.join(folder, "batches.meta"), "wb") as f:
            pickle.dump({b"num_vis": 3072}, f, protocol=2)
        self.assert_refused("cifar10", folder, "batches.meta", "'label_names'")

    @parameterized.named_parameters(("raw", False), ("gzipped", True))
    def test_mnist(self, gz):
        folder = _tmpdir(self)
        write_mnist(folder, gz=gz)
        suffix = ".gz" if gz else ""
        labels = os.path.join(folder, "train-labels-idx1-ubyte" + suffix)
        with open(labels, "rb") as f:
            whole = f.read()
        for cut in (whole[:0], whole[:6], whole[:-3]):  # empty, no header, truncated
            with open(labels, "wb") as f:
                f.write(cut)
            self.assert_refused("mnist", folder, labels, "re-download")
        write_idx(labels[: len(labels) - len(suffix)], np.full(12, 12), 2049, gz=gz)
        self.assert_refused("mnist", folder, labels, "labels up to 12, expected the digits")
        write_idx(labels[: len(labels) - len(suffix)], np.zeros((12, 2)), 2051, gz=gz)
        self.assert_refused("mnist", folder, labels, "magic number 2051, expected 2049")
        write_idx(labels[: len(labels) - len(suffix)], np.zeros(0), 2049, gz=gz)
        self.assert_refused("mnist", folder, labels, "holds 0 labels")

    def test_npz_files(self):
        folder = _tmpdir(self)
        path = os.path.join(folder, "mine.npz")
        x, y = np.zeros((10, 3), np.float32), np.arange(10) % 2
        np.savez(path, x_train=x, y_train=y)
        with open(path, "rb") as f:
            whole = f.read()
        for cut in (whole[:0], whole[:-10], whole[:100]):
            with open(path, "wb") as f:
                f.write(cut)
            self.assert_refused("npz", path, path, "not a readable .npz archive", "np.savez")
        np.save(path[:-4], x)  # a .npy file
        os.replace(path[:-4] + ".npy", path)
        self.assert_refused("npz", path, path, "not a readable .npz archive")
        np.savez(path, x_train=x, y_train=y)
        with open(path, "r+b") as f:  # a flipped byte inside x_train's data
            f.seek(whole.index(x.tobytes()) + 5)
            f.write(b"\x01")
        self.assert_refused("npz", path, path, "fails its checksum")

    @parameterized.named_parameters(
        ("nan", {"x_train": np.array([[0.0], [np.nan]] * 5)}, "x_train holds 5 NaN/inf"),
        ("inf", {"x_test": np.array([[np.inf]] * 4)}, "x_test holds 4 NaN/inf"),
        ("lengths", {"y_train": np.arange(9) % 2}, "x_train has 10 rows but y_train has 9"),
        ("x_1d", {"x_train": np.zeros(10)}, "x_train has shape (10,)"),
        ("y_2d", {"y_train": np.zeros((10, 2), int)}, "y_train has shape (10, 2)"),
        ("fractions", {"y_train": np.arange(10) / 2}, "not whole numbers (e.g. 0.5)"),
        ("nan_labels", {"y_train": np.array([0.0, np.nan] * 5)}, "not whole numbers"),
        ("text_x", {"x_train": np.array([["a"]] * 10)}, "x_train has dtype <U1"),
        ("complex_y", {"y_train": np.ones(10, complex)}, "labels must be integers or str"),
        ("unseen", {"y_test": np.array([0, 1, 7, 9])}, "labels [7, 9] that never occur"),
        ("names", {"class_names": np.array(["a"])}, "class_names (1 names) the labels"),
        ("mixed", {"y_test": np.array(["a", "b", "a", "b"])}, "strings, others numbers"),
        ("half_split", {"x_val": np.zeros((2, 3))}, "only one of x_val/y_val"),
        ("no_y", {"y_train": None}, "lacks 'y_train'"),
    )
    def test_npz_arrays(self, change, said):
        arrays = {"x_train": np.zeros((10, 1)), "y_train": np.arange(10) % 2}
        arrays.update(x_test=np.zeros((4, 1)), y_test=np.array([0, 1, 0, 1]))
        arrays.update(change)
        path = os.path.join(_tmpdir(self), "mine.npz")
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
        self.assert_refused("npz", path, path, said)

    def test_np_load_never_allows_pickles(self):
        calls = []
        real = np.load

        def load(*args, **kwargs):
            calls.append(kwargs)
            return real(*args, **kwargs)

        path = os.path.join(_tmpdir(self), "mine.npz")
        np.savez(path, x_train=np.zeros((10, 1)), y_train=np.arange(10) % 2)
        with absltest.mock.patch.object(np, "load", load):
            data.load("npz", path)
        self.assertNotEmpty(calls)
        self.assertTrue(all(c.get("allow_pickle") is False for c in calls), calls)


class CommandLineTest(absltest.TestCase):
    """A bad data file through ``python -m experiments.train``: exit status 2, one line."""

    def run_train(self, folder, arrays, *flags):
        path = os.path.join(folder, "mine.npz")
        np.savez(path, **arrays)
        workdir = os.path.join(folder, "run")
        status, stderr = run_in_process(
            "experiments.train",
            ["--config=configs/npz_softmax.py", f"--config.dataset.data_dir={path}"]
            + [f"--workdir={workdir}", "--config.train.num_epochs=1", *flags],
        )
        return status, stderr, workdir

    def test_bad_files_exit_with_status_2(self):
        folder = _tmpdir(self)
        x = np.random.default_rng(0).normal(size=(40, 3))
        cases = {
            "not whole numbers": ({"x_train": x, "y_train": np.arange(40) % 3 + 0.5}, ()),
            "larger than the 8 training": (
                {"x_train": x[:12], "y_train": np.arange(12) % 2},
                ("--config.train.batch_size=30",),
            ),
        }
        for said, (arrays, flags) in cases.items():
            status, stderr, workdir = self.run_train(folder, arrays, *flags)
            self.assertEqual(status, 2, stderr)
            lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
            self.assertLen(lines, 1, stderr)
            self.assertIn(said, lines[0])
            self.assertFalse(os.path.exists(workdir))

    def test_labels_1_to_3_as_floats_train_three_classes(self):
        folder = _tmpdir(self)
        rng = np.random.default_rng(0)
        y = np.arange(60) % 3 + 1.0  # 1.0, 2.0, 3.0: the wine data set's labels
        x = rng.normal(size=(60, 4)) + y[:, None]
        status, stderr, workdir = self.run_train(folder, {"x_train": x, "y_train": y})
        self.assertIn(status, (0, None), stderr)
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["label_values"], [1, 2, 3])
        self.assertEqual(summary["num_params"], 4 * 3 + 3)  # W (4, 3) and b (3,): 3 classes


class LabelValuesTest(absltest.TestCase):
    def load(self, **arrays):
        path = os.path.join(_tmpdir(self), "mine.npz")
        np.savez(path, **arrays)
        return data.load("npz", path, center=False)

    def test_values_become_classes_in_sorted_order(self):
        x = np.arange(12.0).reshape(12, 1)
        for y, values in (
            (np.array([3, 1, 2] * 4), (1, 2, 3)),
            (np.array([3.0, 1.0, 2.0] * 4), (1, 2, 3)),
            (np.array([10, -5, 0] * 4), (-5, 0, 10)),
            (np.array(["dog", "cat", "emu"] * 4), ("cat", "dog", "emu")),
        ):
            y_test = y[:3][::-1]
            ds = self.load(
                x_train=x, y_train=y, x_val=x[:3], y_val=y[:3], x_test=x[:3], y_test=y_test
            )
            self.assertEqual(ds.label_values, values)
            self.assertEqual(ds.class_names, tuple(str(v) for v in values))
            self.assertEqual(ds.num_classes, 3)
            # Class k is label value values[k], row for row, in every split.
            for labels, classes in ((y, ds.y_train), (y[:3], ds.y_val), (y_test, ds.y_test)):
                want = [values.index(v.item() if hasattr(v, "item") else v) for v in labels]
                np.testing.assert_array_equal(classes, want)
                self.assertEqual(classes.dtype, np.int32)

    def test_labels_0_to_k_minus_1_stay(self):
        x = np.zeros((12, 1))
        ds = self.load(x_train=x, y_train=np.arange(12) % 4)
        self.assertIsNone(ds.label_values)
        self.assertEqual(ds.class_names, ("0", "1", "2", "3"))
        names = np.array(["a", "b", "c", "d", "e"])  # class "e" never labelled
        with self.assertLogs("absl", "WARNING") as logs:
            ds = self.load(x_train=x, y_train=np.arange(12) % 4 + 1, class_names=names)
        self.assertIsNone(ds.label_values)
        self.assertEqual(ds.class_names, tuple("abcde"))
        self.assertIn("class 0 (a) has no training example", "\n".join(logs.output))

    def test_a_class_left_out_by_num_train_is_warned_of(self):
        x = np.zeros((40, 1))
        path = os.path.join(_tmpdir(self), "mine.npz")
        y, y_small = np.arange(40) // 20, np.arange(2)
        np.savez(
            path, x_train=x, y_train=y, x_val=x[:2], y_val=y_small, x_test=x[:2], y_test=y_small
        )
        with self.assertLogs("absl", "WARNING") as logs:
            data.load("npz", path, num_train=10)
        self.assertIn("class 1 (1) has no training example", "\n".join(logs.output))


@contextlib.contextmanager
def _time_limit(seconds):
    """Raises TimeoutError when the block runs longer than ``seconds`` (a hang)."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _arrays(ds):
    return [ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test]


# A corruption of one file: cut at a byte, or XOR up to three bytes with nonzero masks.
CORRUPTIONS = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("flip"),
        st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
            min_size=1,
            max_size=3,
        ),
    ),
)
SETTINGS = hypothesis.settings(max_examples=40, deadline=None, database=None, derandomize=True)


class CorruptedFilesTest(parameterized.TestCase):
    """A valid fixture file, randomly corrupted: the same data, or the one-line error.

    Formats with checksums (.npz, gzip) must load the same data or refuse; formats without
    (pickles, raw IDX) may load changed values, but then only as many values as bytes were
    flipped, in arrays of the same shapes (a flipped pixel is still a pixel); a cut file is
    always refused."""

    FORMATS = {
        "cifar10": (lambda d: write_cifar(d, bytes_keys=True, python2=True), False),
        "mnist": (lambda d: write_mnist(d, gz=False), False),
        "mnist_gz": (lambda d: write_mnist(d, gz=True), True),
        "npz": (lambda d: _write_npz(os.path.join(d, "mine.npz")), True),
    }

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="data_formats_test_")
        cls.fixtures = {}  # format -> (folder, the data set it loads as)
        for fmt, (write, _) in cls.FORMATS.items():
            folder = os.path.join(cls.root, fmt)
            os.makedirs(folder)
            write(folder)
            cls.fixtures[fmt] = (folder, data.load(cls.name(fmt), folder, center=False))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    @staticmethod
    def name(fmt):
        return fmt.split("_")[0]

    def check(self, fmt, which, corruption):
        folder, before = self.fixtures[fmt]
        files = sorted(os.listdir(folder))
        path = os.path.join(folder, files[int(which * len(files))])
        with open(path, "rb") as f:
            original = f.read()
        try:
            self.check_corrupted(fmt, path, bytearray(original), corruption, before)
        finally:
            with open(path, "wb") as f:
                f.write(original)

    def check_corrupted(self, fmt, path, raw, corruption, before):
        kind, how = corruption
        if kind == "cut":
            raw = raw[: int(how * len(raw))]
            flips = 0
        else:
            for where, mask in how:
                raw[int(where * len(raw))] ^= mask
            flips = len({int(where * len(raw)) for where, _ in how})
        with open(path, "wb") as f:
            f.write(raw)
        try:
            with _time_limit(20):
                after = data.load(self.name(fmt), os.path.dirname(path), center=False)
        except ERRORS as e:
            self.assertNotIn("\n", str(e))
            self.assertIn(os.path.basename(path), str(e))
            return
        self.assertEqual(kind, "flip", "a cut file loaded")
        changed = sum(int(np.sum(a != b)) for a, b in zip(_arrays(before), _arrays(after)))
        changed += sum(a != b for a, b in zip(before.class_names, after.class_names))
        self.assertEqual([a.shape for a in _arrays(before)], [a.shape for a in _arrays(after)])
        self.assertLen(after.class_names, len(before.class_names))
        self.assertLessEqual(changed, 0 if self.FORMATS[fmt][1] else flips)

    @hypothesis.given(which=st.floats(0, 1, exclude_max=True), corruption=CORRUPTIONS)
    @SETTINGS
    def test_cifar10(self, which, corruption):
        self.check("cifar10", which, corruption)

    @hypothesis.given(which=st.floats(0, 1, exclude_max=True), corruption=CORRUPTIONS)
    @SETTINGS
    def test_mnist(self, which, corruption):
        self.check("mnist", which, corruption)

    @hypothesis.given(which=st.floats(0, 1, exclude_max=True), corruption=CORRUPTIONS)
    @SETTINGS
    def test_mnist_gzipped(self, which, corruption):
        self.check("mnist_gz", which, corruption)

    @hypothesis.given(corruption=CORRUPTIONS)
    @SETTINGS
    def test_npz(self, corruption):
        self.check("npz", 0.0, corruption)


def _write_npz(path):
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    np.savez(
        path,
        x_train=rng.normal(size=(30, 2, 2)).astype(np.float32),
        y_train=y,
        x_test=rng.normal(size=(6, 2, 2)),
        y_test=y[:6],
        class_names=np.array(["a", "b", "c"]),
    )


if __name__ == "__main__":
    absltest.main()
