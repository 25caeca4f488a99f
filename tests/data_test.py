"""Tests for lib/data.py and lib/data_formats.py: real file formats written as tiny fixtures,
read back through `data.load`."""

import gzip
import os
import shutil
import tempfile
import tracemalloc
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from sklearn import datasets as sk_datasets

from lib import data, data_formats
from tests.fixtures import CIFAR_NAMES, write_cifar, write_idx, write_mnist


def _sorted_rows(x):
    x = np.asarray(x)
    return x[np.lexsort(x.T[::-1])]


class TmpDirTestCase(parameterized.TestCase):
    """``self.tmpdir()``: a fresh folder (absl's create_tempdir needs parsed flags)."""

    def tmpdir(self):
        path = tempfile.mkdtemp(prefix="data_test_")
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path


class NamesAndArgsTest(absltest.TestCase):
    def test_unknown_name_lists_valid_ones(self):
        with self.assertRaisesRegex(ValueError, "cifar10, mnist, spiral, npz"):
            data.load("imagenet")
        self.assertEqual(data.DATASETS, ("digits", "cifar10", "mnist", "spiral", "npz"))

    def test_missing_data_dir_names_the_flag(self):
        for name in ("cifar10", "mnist", "npz"):
            with self.assertRaisesRegex(ValueError, "--config.dataset.data_dir"):
                data.load(name)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "num_val"):
            data.load("digits", num_val=0)
        with self.assertRaisesRegex(ValueError, "scale"):
            data.load("digits", scale=float("nan"))
        with self.assertRaisesRegex(ValueError, "num_train=5000.*1079"):
            data.load("digits", num_train=5000)


class RegistryTest(absltest.TestCase):
    def test_load_dispatches_through_the_registry(self):
        x, y = np.arange(12, dtype=np.uint8).reshape(6, 2), np.array([0, 1, 0, 1, 0, 1])
        requests = []

        def read_toy(request):
            requests.append(request)
            splits = {"train": (x, y), "val": (x[:2], y[:2]), "test": (x[2:4], y[2:4])}
            return data_formats.RawData(splits, ("a", "b"), (2,))

        toy = data_formats.Reader(read_toy, needs_data_dir=True)
        with mock.patch.dict(data_formats.READERS, toy=toy):
            with self.assertRaisesRegex(ValueError, "'toy' reads files from disk"):
                data.load("toy")
            ds = data.load("toy", "~/toy", seed=7, num_val=2, center=False)
        self.assertEqual((ds.name, ds.class_names, ds.image_shape), ("toy", ("a", "b"), (2,)))
        np.testing.assert_array_equal(ds.x_train, x)
        np.testing.assert_array_equal(ds.train_pixels, x)
        request = requests[-1]
        self.assertEqual(request[:3], (os.path.expanduser("~/toy"), 7, 2))
        self.assertIs(request.check_arrays, data.check_arrays)
        with self.assertRaisesRegex(
            ValueError, "valid names are digits, cifar10, mnist, spiral, npz[.]"
        ):
            data.load("toy")  # unregistered again
        self.assertEqual(data.DATASETS, tuple(data_formats.READERS))


class CheckArraysTest(absltest.TestCase):
    def test_flattens_images_and_casts(self):
        x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        xf, yf = data.check_arrays(x, np.array([1, 0], np.int64), num_classes=2)
        self.assertEqual((xf.dtype, yf.dtype), (np.float32, np.int32))
        np.testing.assert_array_equal(xf[1], np.arange(12, 24))
        chex.assert_shape(xf, (2, 12))

    def test_errors_name_the_array_and_fix(self):
        x = np.zeros((3, 2))
        with self.assertRaisesRegex(ValueError, r"x_val has 3 rows but y_val has 2.*one label"):
            data.check_arrays(x, np.array([0, 1]), name="val")
        with self.assertRaisesRegex(
            ValueError, r"y_train has labels in \[0, 3\], expected \[0, 3\)"
        ):
            data.check_arrays(x, np.array([0, 3, 1]), num_classes=3)
        with self.assertRaisesRegex(ValueError, "labels in .-1"):
            data.check_arrays(x, np.array([0, -1, 1]))
        with self.assertRaisesRegex(ValueError, "x_test holds 1 NaN/inf"):
            data.check_arrays(
                np.array([[0.0, np.nan], [1, 2], [3, 4]]), np.array([0, 1, 1]), name="test"
            )
        with self.assertRaisesRegex(ValueError, "y_train has dtype float64.*not whole"):
            data.check_arrays(x, np.array([0.0, 1.5, 1.0]))
        _, y = data.check_arrays(x, np.array([0.0, 2.0, 1.0]))  # whole numbers: the integers
        np.testing.assert_array_equal(y, [0, 2, 1])
        self.assertEqual(y.dtype, np.int32)
        with self.assertRaisesRegex(ValueError, "y_train has shape .3, 1.*1-D"):
            data.check_arrays(x, np.zeros((3, 1), np.int32))
        with self.assertRaisesRegex(ValueError, r"x_train has shape \(3,\).*reshape"):
            data.check_arrays(np.zeros(3), np.zeros(3, np.int32))
        with self.assertRaisesRegex(ValueError, "x_train has dtype"):
            data.check_arrays(np.array([["a"], ["b"]]), np.zeros(2, np.int32))

    def test_to_images(self):
        w = np.arange(2 * 12, dtype=np.float32).reshape(2, 12)
        img = data.to_images(w, (2, 2, 3))
        chex.assert_shape(img, (2, 2, 2, 3))
        self.assertEqual(img[1, 1, 0, 2], w[1, 1 * 6 + 0 * 3 + 2])
        with self.assertRaisesRegex(ValueError, "image_shape"):
            data.to_images(w, (3, 3))


class DigitsTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        raw = sk_datasets.load_digits()
        cls.raw_x, cls.raw_y = raw.data.astype(np.float32), raw.target
        cls.ds = data.load("digits", seed=0, center=False)

    def test_sizes_and_values(self):
        ds = self.ds
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (1079, 359, 359))
        self.assertEqual((ds.num_features, ds.num_classes, ds.image_shape), (64, 10, (8, 8)))
        self.assertEqual(
            (ds.x_train.dtype, ds.y_train.dtype, ds.x_test.dtype, ds.y_val.dtype),
            (np.float32, np.int32, np.float32, np.int32),
        )
        self.assertIn("1079 train / 359 val / 359 test", ds.describe())
        # The three splits together are exactly the raw data set (rows with labels).
        got = np.concatenate(
            [
                np.concatenate([x, y[:, None]], 1)
                for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test))
            ]
        )
        want = np.concatenate([self.raw_x, self.raw_y[:, None]], 1)
        np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(want))
        np.testing.assert_array_equal(ds.mean, np.zeros(64))

    def test_stratified(self):
        p = np.bincount(self.raw_y, minlength=10) / len(self.raw_y)
        for y in (self.ds.y_train, self.ds.y_val, self.ds.y_test):
            counts = np.bincount(y, minlength=10)
            # A random (unstratified) split of 359 has a per-class std of ~5.7.
            np.testing.assert_array_less(np.abs(counts - len(y) * p), 2.0)

    def test_deterministic_per_seed(self):
        again = data.load("digits", seed=0, center=False)
        other = data.load("digits", seed=1, center=False)
        np.testing.assert_array_equal(again.x_train, self.ds.x_train)
        np.testing.assert_array_equal(again.y_val, self.ds.y_val)
        self.assertFalse(np.array_equal(other.x_train, self.ds.x_train))

    def test_mean_from_train_only(self):
        ds = data.load("digits", seed=0, scale=0.5)
        mean = self.ds.x_train.astype(np.float64).mean(0)
        chex.assert_trees_all_close(ds.mean, mean.astype(np.float32), atol=1e-5)
        chex.assert_trees_all_close(ds.x_train, (self.ds.x_train - mean) * 0.5, atol=1e-5)
        chex.assert_trees_all_close(ds.x_val, (self.ds.x_val - mean) * 0.5, atol=1e-5)
        chex.assert_trees_all_close(ds.x_test, (self.ds.x_test - mean) * 0.5, atol=1e-5)
        np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
        self.assertGreater(np.abs(ds.x_val.mean(0)).max(), 0.05)  # val is not re-centred

    def test_num_val_and_num_train(self):
        ds = data.load("digits", seed=0, num_val=100, num_train=50)
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (50, 100, 359))
        raw = data.load("digits", seed=0, num_val=100, center=False)
        np.testing.assert_array_equal(raw.y_train[:50], ds.y_train)
        chex.assert_trees_all_close(ds.mean, raw.x_train[:50].mean(0), atol=1e-5)


class PixelsTest(TmpDirTestCase):
    """Integer pixels are kept as uint8 and mean, after `rows`, the float32 rows bit for bit."""

    def test_digits_pixels_are_the_float_rows(self):
        ds = data.load("digits", seed=0, scale=0.3)  # not a power of 2: rounding matters
        self.assertEqual(ds.train_pixels.dtype, np.uint8)
        self.assertEqual(ds.train_pixels.shape, ds.x_train.shape)
        self.assertEqual(ds.scale, 0.3)
        self.assertGreater(np.abs(ds.mean).max(), 1.0)  # really centred: the test can fail
        np.testing.assert_array_equal(
            data.preprocess(ds.train_pixels, ds.mean, ds.scale), ds.x_train
        )
        device = jax.device_put(data.Pixels(ds.train_pixels, ds.mean, np.float32(ds.scale)))
        idx = jnp.array([5, 0, 1078, 5], jnp.int32)
        np.testing.assert_array_equal(jax.jit(data.rows)(device, idx), ds.x_train[[5, 0, 1078, 5]])
        np.testing.assert_array_equal(data.rows(device, slice(3, None, 7)), ds.x_train[3::7])
        np.testing.assert_array_equal(data.rows(device), ds.x_train)
        self.assertEqual(device.shape, ds.x_train.shape)
        # Plain float rows go through `rows` unchanged.
        np.testing.assert_array_equal(
            data.rows(jnp.asarray(ds.x_train), idx), ds.x_train[[5, 0, 1078, 5]]
        )

    def test_cifar_pixels(self):
        folder = self.tmpdir()
        write_cifar(folder, bytes_keys=True)
        ds = data.load("cifar10", folder, scale=1 / 255)
        np.testing.assert_array_equal(
            data.preprocess(ds.train_pixels, ds.mean, ds.scale), ds.x_train
        )

    def test_pixels_are_made_float32_once(self):
        # (x - mean) * scale allocated two more float32 copies of the training set beside
        # the checked one, and the pixel check compared float copies: loading peaked at 2.5
        # times the float32 rows (1.5 GB for CIFAR-10's 49000); now 1.3 times.
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (2000, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 2000)
        splits = {"train": (x, y), "val": (x[:10], y[:10]), "test": (x[10:20], y[10:20])}
        tracemalloc.start()
        try:
            ds = data.from_splits("pixels", splits, range(10), (32, 32, 3), scale=1 / 255)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 2 * x.size * 4)  # the float32 rows, the uint8 pixels, no more
        want = (x.astype(np.float32) - ds.mean) * np.float32(1 / 255)
        np.testing.assert_array_equal(ds.x_train, want)
        np.testing.assert_array_equal(ds.train_pixels, x)
        np.testing.assert_array_equal(ds.x_test, want[10:20])

    @parameterized.named_parameters(
        ("integers_0_255_as_float", np.float64, 0, 256, True),
        ("fractions", np.float32, 0, 1, False),
        ("above_255", np.int32, 0, 1000, False),
        ("negative", np.int32, -3, 3, False),
    )
    def test_only_integers_in_0_255_are_pixels(self, dtype, lo, hi, pixels):
        rng = np.random.default_rng(0)
        x = rng.uniform(lo, hi, (40, 6)) if dtype == np.float32 else rng.integers(lo, hi, (40, 6))
        path = os.path.join(self.tmpdir(), "d.npz")
        np.savez(path, x_train=x.astype(dtype), y_train=np.arange(40) % 2)
        ds = data.load("npz", path)
        self.assertEqual(ds.train_pixels is not None, pixels)
        self.assertIsNone(data.load("spiral").train_pixels)


class Cifar10Test(TmpDirTestCase):
    @parameterized.named_parameters(
        ("python2_layout", True, True), ("bytes_keys", True, False), ("str_keys", False, False)
    )
    def test_read_back(self, bytes_keys, python2):
        folder = self.tmpdir()
        (_, y_raw), (xt_raw, yt_raw) = write_cifar(folder, bytes_keys=bytes_keys, python2=python2)
        ds = data.load("cifar10", folder, center=False)
        self.assertEqual(ds.class_names, CIFAR_NAMES)
        self.assertEqual(ds.image_shape, (32, 32, 3))
        # 20 training images: num_val defaults to min(1000, 20 // 10) = 2, the last two.
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (18, 2, 3))
        np.testing.assert_array_equal(ds.y_train, y_raw[:18])
        np.testing.assert_array_equal(ds.y_val, y_raw[18:])
        np.testing.assert_array_equal(ds.y_test, yt_raw)
        # Channel order: the red-200 / green-10 / blue-50 image, red pixel (1, 2) = 7.
        img = ds.to_images(ds.x_train)[0]
        red = np.full((32, 32), 200.0)
        red[1, 2] = 7
        np.testing.assert_array_equal(img[..., 0], red)
        np.testing.assert_array_equal(img[..., 1], np.full((32, 32), 10.0))
        np.testing.assert_array_equal(img[..., 2], np.full((32, 32), 50.0))
        # Every pixel: image[i, r, c, ch] = data[i, 1024 * ch + 32 * r + c].
        images = data.to_images(ds.x_test, ds.image_shape)
        for i, r, c, ch in [(0, 0, 0, 0), (1, 31, 0, 1), (2, 5, 17, 2), (2, 31, 31, 0)]:
            self.assertEqual(images[i, r, c, ch], xt_raw[i, 1024 * ch + 32 * r + c])
        want = np.stack([xt_raw[:, 1024 * ch : 1024 * (ch + 1)] for ch in range(3)], -1)
        np.testing.assert_array_equal(ds.x_test, want.reshape(3, -1))

    def test_num_val_centring_and_parent_folder(self):
        parent = self.tmpdir()
        (x_raw, _), _ = write_cifar(os.path.join(parent, "cifar-10-batches-py"), bytes_keys=True)
        ds = data.load("cifar10", parent, num_val=5)
        self.assertEqual((len(ds.y_train), len(ds.y_val)), (15, 5))
        hwc = x_raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(20, -1)
        mean = hwc[:15].astype(np.float64).mean(0)
        chex.assert_trees_all_close(ds.mean, mean.astype(np.float32), atol=1e-4)
        chex.assert_trees_all_close(ds.x_val, (hwc[15:] - mean).astype(np.float32), atol=1e-4)

    def test_missing_folder_names_files_and_source(self):
        missing = os.path.join(self.tmpdir(), "nope")
        with self.assertRaisesRegex(FileNotFoundError, "folder '.*nope' does not exist") as cm:
            data.load("cifar10", missing)
        for part in (
            "data_batch_1",
            "test_batch",
            "batches.meta",
            "cs.toronto.edu/~kriz",
            "python version",
        ):
            self.assertIn(part, str(cm.exception))

    def test_missing_one_batch(self):
        folder = self.tmpdir()
        write_cifar(folder, bytes_keys=False)
        os.remove(os.path.join(folder, "data_batch_4"))
        with self.assertRaisesRegex(
            FileNotFoundError, "lacks data_batch_4; expected a folder holding data_batch_1"
        ):
            data.load("cifar10", folder)


class MnistTest(TmpDirTestCase):
    @parameterized.named_parameters(("raw", False), ("gzipped", True))
    def test_read_back(self, gz):
        folder = self.tmpdir()
        raw = write_mnist(folder, gz=gz)
        ds = data.load("mnist", folder, center=False)
        self.assertEqual(ds.image_shape, (5, 4))
        self.assertEqual(ds.class_names, tuple("0123456789"))
        # 12 training images: num_val defaults to max(1, min(5000, 12 // 10)) = 1.
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (11, 1, 3))
        x, y = raw["train"]
        np.testing.assert_array_equal(ds.to_images(ds.x_train), x[:11])
        np.testing.assert_array_equal(ds.x_val, x[11:].reshape(1, 20))
        np.testing.assert_array_equal(ds.y_train, y[:11])
        np.testing.assert_array_equal(ds.y_val, y[11:])
        np.testing.assert_array_equal(ds.to_images(ds.x_test), raw["t10k"][0])
        np.testing.assert_array_equal(ds.y_test, raw["t10k"][1])
        ds = data.load("mnist", folder, num_val=4)
        self.assertEqual((len(ds.y_train), len(ds.y_val)), (8, 4))
        chex.assert_trees_all_close(
            ds.mean, x[:8].reshape(8, -1).mean(0).astype(np.float32), atol=1e-4
        )

    def test_wrong_magic(self):
        folder = self.tmpdir()
        write_mnist(folder, gz=False)
        x = np.zeros((12, 5, 4), np.uint8)
        write_idx(os.path.join(folder, "train-images-idx3-ubyte"), x, 2049, gz=False)
        with self.assertRaisesRegex(ValueError, "magic number 2049, expected 2051.*re-download"):
            data.load("mnist", folder)

    def test_truncated_file(self):
        folder = self.tmpdir()
        write_mnist(folder, gz=True)
        path = os.path.join(folder, "t10k-images-idx3-ubyte.gz")
        with gzip.open(path, "rb") as f:
            payload = f.read()
        with gzip.open(path, "wb") as f:
            f.write(payload[:-3])
        with self.assertRaisesRegex(ValueError, r"header says \(3, 5, 4\) = 60 values.*57"):
            data.load("mnist", folder)

    def test_label_count_mismatch(self):
        folder = self.tmpdir()
        write_mnist(folder, gz=False)
        write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), np.zeros(2), 2049, gz=False)
        with self.assertRaisesRegex(ValueError, "3 images but .* 2 labels"):
            data.load("mnist", folder)

    def test_missing_files(self):
        folder = self.tmpdir()
        with self.assertRaisesRegex(FileNotFoundError, "lacks train-images-idx3-ubyte") as cm:
            data.load("mnist", folder)
        for part in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "mnist"):
            self.assertIn(part, str(cm.exception))


class SpiralTest(absltest.TestCase):
    def test_shapes_and_geometry(self):
        ds = data.load("spiral", seed=0, center=False)
        self.assertEqual((ds.num_features, ds.num_classes, ds.image_shape), (2, 3, (2,)))
        for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
            chex.assert_shape(x, (300, 2))
            np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
            for j in range(3):
                xj = x[y == j].astype(np.float64)
                # x = r [sin t, cos t] with r = linspace(0, 1, 100): the radii are exact.
                r = np.sqrt((xj**2).sum(1))
                order = np.argsort(r)
                np.testing.assert_allclose(r[order], np.linspace(0, 1, 100), atol=1e-6)
                # t = linspace(4j, 4j + 4, 100) + 0.2 * randn: the angle residual has std ~0.2.
                t = np.linspace(4 * j, 4 * j + 4, 100)
                resid = np.angle(np.exp(1j * (np.arctan2(xj[order, 0], xj[order, 1]) - t)))[1:]
                self.assertLess(abs(resid.std() - 0.2), 0.05)
                self.assertLess(abs(resid.mean()), 0.07)
        self.assertFalse(np.array_equal(np.sort(ds.x_train, 0), np.sort(ds.x_val, 0)))

    def test_seed_and_centring(self):
        a = data.load("spiral", seed=3, num_val=30)
        b = data.load("spiral", seed=3, num_val=30)
        c = data.load("spiral", seed=4, num_val=30)
        np.testing.assert_array_equal(a.x_test, b.x_test)
        self.assertFalse(np.array_equal(a.x_test, c.x_test))
        self.assertEqual(len(a.y_val), 30)
        np.testing.assert_allclose(a.x_train.mean(0), 0.0, atol=1e-6)


class NpzTest(TmpDirTestCase):
    def _arrays(self, n=40, seed=0):
        rng = np.random.default_rng(seed)
        return rng.normal(size=(n, 3, 2)).astype(np.float32), np.arange(n) % 4

    def test_round_trip_with_all_splits(self):
        x, y = self._arrays()
        path = os.path.join(self.tmpdir(), "mine.npz")
        np.savez(
            path,
            x_train=x,
            y_train=y,
            x_val=x[:5] + 1,
            y_val=y[:5],
            x_test=x[:7] - 1,
            y_test=y[:7],
            class_names=np.array(["a", "b", "c", "d"]),
        )
        ds = data.load("npz", path, center=False)
        self.assertEqual((ds.class_names, ds.image_shape), (("a", "b", "c", "d"), (3, 2)))
        np.testing.assert_array_equal(ds.x_train, x.reshape(40, 6))
        np.testing.assert_array_equal(ds.x_val, (x[:5] + 1).reshape(5, 6))
        np.testing.assert_array_equal(ds.y_test, y[:7])
        ds = data.load("npz", path)
        mean = x.reshape(40, 6).astype(np.float64).mean(0)
        want = ((x[:7] - 1).reshape(7, 6) - mean).astype(np.float32)
        chex.assert_trees_all_close(ds.x_test, want, atol=1e-6)

    def test_splits_off_val_and_test_from_a_folder(self):
        x, y = self._arrays()
        folder = self.tmpdir()
        np.savez(os.path.join(folder, "only.npz"), x_train=x, y_train=y)
        ds = data.load("npz", folder, seed=1, center=False)
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (24, 8, 8))
        self.assertEqual(ds.class_names, ("0", "1", "2", "3"))
        for labels in (ds.y_val, ds.y_test):  # stratified: 2 of each class
            np.testing.assert_array_equal(np.bincount(labels), [2, 2, 2, 2])
        got = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
        np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(x.reshape(40, 6)))
        ds = data.load("npz", folder, seed=1, num_val=4)
        self.assertEqual((len(ds.y_train), len(ds.y_val), len(ds.y_test)), (28, 4, 8))

    def test_errors(self):
        x, y = self._arrays()
        folder = self.tmpdir()
        with self.assertRaisesRegex(FileNotFoundError, "exactly one .npz.*found none"):
            data.load("npz", folder)
        with self.assertRaisesRegex(FileNotFoundError, "missing.npz.*x_train, y_train"):
            data.load("npz", os.path.join(folder, "missing.npz"))
        bad = os.path.join(folder, "bad.npz")
        np.savez(bad, x_train=x, y_train=y[:-1])
        with self.assertRaisesRegex(ValueError, "x_train has 40 rows but y_train has 39"):
            data.load("npz", bad)
        np.savez(
            bad, x_train=x, y_train=y, x_test=x, y_test=y + 1, class_names=np.array(list("abcd"))
        )
        with self.assertRaisesRegex(
            ValueError, r"bad.npz: y_test holds labels \[1, 2, 3, 4\].*indices 0..3"
        ):
            data.load("npz", bad)
        x_nan = x.copy()
        x_nan[3, 1, 1] = np.nan
        np.savez(bad, x_train=x_nan, y_train=y)
        with self.assertRaisesRegex(ValueError, "x_train holds 1 NaN"):
            data.load("npz", bad)
        np.savez(bad, x_train=x, y_train=y, x_val=x)
        with self.assertRaisesRegex(ValueError, "only one of x_val/y_val"):
            data.load("npz", bad)
        np.savez(os.path.join(folder, "second.npz"), x_train=x, y_train=y)
        with self.assertRaisesRegex(FileNotFoundError, "exactly one .npz"):
            data.load("npz", folder)


if __name__ == "__main__":
    absltest.main()
