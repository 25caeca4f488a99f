"""Default search spaces derived from the data (lib/autospace.py), and the preprocessing
``dataset.preprocess`` chooses (lib/settings.py)."""

import dataclasses
import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from configs import common
from lib import autospace, data, settings
from lib.narrowing import border_extensions, narrow
from lib.space import Dim


def _dataset(x, y, image_shape=None):
    splits = {s: (x, y) for s in ("train", "val", "test")}
    shape = image_shape or (x.shape[1],)
    return data.from_splits("toy", splits, [str(k) for k in range(int(y.max()) + 1)], shape)


def _setup(optimizer="sgd", loss="softmax", model="linear", k=3, d=5):
    return settings.Setup(
        num_features=d, num_classes=k, model=model, loss=loss, optimizer=optimizer
    )


class ScalesTest(absltest.TestCase):
    def test_scales_match_numpy_of_the_formulas(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])
        ds = _dataset(x.astype(np.float32), rng.integers(0, 3, 300))
        s = autospace.data_scales(ds)
        xc = ds.x_train.astype(np.float64) - ds.x_train.mean(0)
        self.assertAlmostEqual(s.top_eigenvalue, np.linalg.eigvalsh(np.cov(xc.T, bias=True))[-1], 4)
        self.assertAlmostEqual(s.mean_l1, np.abs(xc).sum(1).mean(), 4)
        self.assertAlmostEqual(s.mean_variance, xc.var(0).mean(), 5)
        self.assertEqual((s.num_train, s.num_classes), (300, 3))


class DefaultSpaceTest(parameterized.TestCase):
    def _ranges(self, scale, optimizer, loss="softmax"):
        rng = np.random.default_rng(1)
        x = (rng.normal(size=(200, 5)) * scale).astype(np.float32)
        ds = _dataset(x, rng.integers(0, 3, 200))
        space, notes = autospace.default_space(
            _setup(optimizer, loss), settings.DEFAULT_HPARAMS, autospace.data_scales(ds)
        )
        self.assertEqual(set(notes), set(space))
        return space

    @parameterized.parameters(("sgd", 2), ("momentum", 2), ("nesterov", 2), ("adam", 1))
    def test_learning_rate_follows_the_feature_scale(self, optimizer, power):
        """Features 10x larger: plain steps 100x smaller (the curvature grows with x^2),
        adaptive steps 10x smaller (a score moves by lr * ||x||_1); reg 100x larger."""
        a, b = self._ranges(1.0, optimizer), self._ranges(10.0, optimizer)
        ratio = a["learning_rate"].low / b["learning_rate"].low
        self.assertAlmostEqual(ratio, 10.0**power, delta=1e-3 * 10.0**power)
        self.assertAlmostEqual(b["reg"].low / a["reg"].low, 100.0, delta=0.1)

    def test_hand_values(self):
        """c = 1 / lambda_max for sgd, (1 - mu) c for momentum, / (K - 1) for the hinge;
        reg around v / N; dropout only for the two-layer net."""
        x = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]], np.float32)
        ds = _dataset(x, np.array([0, 1, 2, 0]))
        scales = autospace.data_scales(ds)  # covariance diag(2, 0.5): lambda_max = 2
        self.assertAlmostEqual(scales.top_eigenvalue, 2.0, 6)
        hp = settings.DEFAULT_HPARAMS
        space, _ = autospace.default_space(_setup("sgd", d=2), hp, scales)
        self.assertAlmostEqual(space["learning_rate"].low, 0.5 / 100)
        self.assertAlmostEqual(space["reg"].low, (2.5 / 2 / 4) / 100)  # v = 1.25, N = 4
        space, _ = autospace.default_space(_setup("momentum", "hinge", d=2), hp, scales)
        self.assertAlmostEqual(space["learning_rate"].high, 0.5 * 0.1 / 2 * 100)
        self.assertNotIn("dropout", space)
        two_layer = dataclasses.replace(_setup("adam", d=2), model="two_layer")
        space, _ = autospace.default_space(two_layer, hp, scales)
        self.assertEqual(space["dropout"], Dim(0.0, 0.5, "linear"))
        self.assertAlmostEqual(space["learning_rate"].low, 1 / 1.5 / 100)  # mean |x|_1 = 1.5
        space, _ = autospace.default_space(_setup("newton", d=2), hp, scales)
        self.assertNotIn("learning_rate", space)  # newton takes the full step

    def test_configured_entries_stay_and_are_not_extendable(self):
        ds = data.load("digits", scale=1 / 16)
        setup = settings.Setup(64, 10, optimizer="momentum")
        mine = {"reg": Dim(1e-3, 1e-2, "log")}
        space, extendable, notes = autospace.resolve(mine, setup, settings.DEFAULT_HPARAMS, ds)
        self.assertEqual(space["reg"], mine["reg"])
        self.assertEqual(extendable, ("learning_rate",))
        self.assertEqual(notes["reg"], "configured")

    def test_default_stages(self):
        self.assertEqual(autospace.default_stages(15), [(64, 1), (16, 4), (8, 15)])
        self.assertEqual(autospace.default_stages(30, 32), [(32, 2), (8, 8), (4, 30)])
        self.assertEqual(autospace.default_stages(4), [(64, 1), (8, 4)])
        self.assertEqual(autospace.default_stages(1), [(8, 1)])


SPACE = {"learning_rate": Dim(1e-4, 1e-2, "log"), "reg": Dim(1e-6, 1e-2, "log")}


class BorderExtensionTest(absltest.TestCase):
    def _trials(self):
        rng = np.random.default_rng(0)
        rows = [
            {"learning_rate": 10 ** rng.uniform(-4, -2), "reg": 10 ** rng.uniform(-6, -2)}
            for _ in range(40)
        ]
        return rows, [np.log10(r["learning_rate"]) for r in rows]  # best at the high border

    def test_a_default_range_grows_past_the_border_its_best_touch(self):
        rows, scores = self._trials()
        grown = border_extensions(SPACE, rows, scores, ("learning_rate", "reg"))
        self.assertEqual(list(grown), ["learning_rate"])  # reg's best are spread: inside
        side, bound = grown["learning_rate"]
        self.assertEqual(side, "high")
        self.assertAlmostEqual(np.log10(bound), -1.0, 6)  # half the width (2 decades) past
        space = narrow(SPACE, rows, scores, 0.25, extend=("learning_rate",))
        self.assertEqual(space["learning_rate"].high, bound)
        self.assertGreater(space["learning_rate"].low, 1e-4)  # the other side narrows

    def test_a_configured_range_stays_as_given(self):
        rows, scores = self._trials()
        space = narrow(SPACE, rows, scores, 0.25)
        self.assertEqual(space["learning_rate"].high, 1e-2)
        self.assertEqual(border_extensions(SPACE, rows, scores, ()), {})

    def test_no_extension_past_a_valid_limit(self):
        space = {"dropout": Dim(0.0, 0.5, "linear")}
        rows = [{"dropout": v} for v in np.linspace(0, 0.5, 30)]
        scores = [-r["dropout"] for r in rows]  # best at dropout 0: no valid value below
        self.assertEqual(border_extensions(space, rows, scores, ("dropout",)), {})


class PreprocessTest(absltest.TestCase):
    def _config(self, name, preprocess, scale=1.0, data_dir=None):
        c = common.base_config()
        c.dataset.name, c.dataset.preprocess, c.dataset.scale = name, preprocess, scale
        c.dataset.data_dir = data_dir
        return c

    def test_auto_scales_pixels_by_their_maximum(self):
        auto = settings.load_data(self._config("digits", "auto"))
        hand = settings.load_data(self._config("digits", "center", 1 / 16))
        self.assertEqual(auto.scale, 1 / 16)
        for a, b in zip(auto.arrays(), hand.arrays()):
            np.testing.assert_array_equal(a, b)  # bit for bit the hand-scaled config
        np.testing.assert_array_equal(auto.train_pixels, hand.train_pixels)

    def test_auto_standardizes_other_features(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(100, 3)) * [1.0, 100.0, 1e-3] + [0.0, 5.0, 0.0]
        x = np.concatenate([x, np.ones((100, 1))], axis=1)  # a constant feature
        path = os.path.join(tempfile.mkdtemp(prefix="autospace_test_"), "f.npz")
        np.savez(path, x_train=x, y_train=rng.integers(0, 3, 100))
        ds = settings.load_data(self._config("npz", "auto", data_dir=path))
        self.assertEqual(settings.preprocess_choice(ds, "auto"), "standardize")
        np.testing.assert_allclose(ds.x_train[:, :3].std(0), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(ds.x_train[:, 3], 0.0)  # centred, left unscaled
        self.assertIsNone(ds.train_pixels)

    def test_unknown_preprocess_names_the_choices(self):
        with self.assertRaisesRegex(ValueError, "center, standardize, auto"):
            settings.load_data(self._config("digits", "whiten"))


if __name__ == "__main__":
    absltest.main()
