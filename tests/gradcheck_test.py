"""Tests for lib/gradcheck.py: relative error, grades, round-off, sparse coordinates.

The finite differences themselves (lib/finite_diff.py) are tested in finite_diff_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import gradcheck


class RelativeErrorAndGradeTest(parameterized.TestCase):
    def test_hand_computed(self):
        a = np.array([1.0, 0.0, 2.0, -1.0])
        b = np.array([1.1, 0.0, 2.0, 1.0])
        # entries: 0.1/1.1, 0 (both zero), 0, 2/1
        self.assertEqual(float(gradcheck.relative_error(a, b)), 2.0)
        self.assertAlmostEqual(float(gradcheck.relative_error(a[:3], b[:3])), 0.1 / 1.1, places=15)

    def test_both_zero_is_zero_and_one_zero_is_one(self):
        self.assertEqual(float(gradcheck.relative_error(np.zeros(3), np.zeros(3))), 0.0)
        self.assertEqual(float(gradcheck.relative_error(np.array([0.0]), np.array([1e-9]))), 1.0)

    def test_pytree_max_over_leaves_in_float64(self):
        a = {"x": np.array([3.0]), "y": np.array([0.0, 4.0])}
        b = {"x": np.array([4.0]), "y": np.array([0.0, 4.0 + 2.0**-40])}
        self.assertEqual(float(gradcheck.relative_error(a, b)), 0.25)
        del a["x"], b["x"]
        # 2^-40 / (4 + 2^-40) ~ 2.3e-13: lost entirely in float32
        self.assertAlmostEqual(float(gradcheck.relative_error(a, b)), 2.0**-42, delta=1e-25)

    def test_nan_propagates(self):
        self.assertTrue(
            np.isnan(gradcheck.relative_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])))
        )

    def test_mismatched_inputs(self):
        with self.assertRaisesRegex(ValueError, "same structure"):
            gradcheck.relative_error({"a": np.ones(2)}, {"b": np.ones(2)})
        with self.assertRaisesRegex(ValueError, "shapes"):
            gradcheck.relative_error(np.ones(2), np.ones(3))

    @parameterized.parameters(
        (0.0, False, "good"),
        (1e-7, False, "good"),
        (1.01e-7, False, "too high"),
        (1.01e-7, True, "ok with kinks"),
        (1e-4, True, "ok with kinks"),
        (1e-4, False, "too high"),
        (1.01e-4, True, "uncomfortable"),
        (1e-2, False, "uncomfortable"),
        (1.01e-2, True, "wrong"),
        (1.0, False, "wrong"),
        (float("nan"), False, "wrong"),
    )
    def test_grade_boundaries(self, err, has_kinks, expected):
        self.assertEqual(gradcheck.grade(err, has_kinks), expected)


class CheckTest(absltest.TestCase):
    def test_round_off_is_reported_but_not_graded(self):
        """A tiny exact gradient of a large f: differences below eps*|f|/2h are round-off."""
        scale = np.array([1e-6, 1.0])
        f = lambda p: 1e3 + jnp.sum(scale * p["x"]) + 0.5 * jnp.sum(p["x"] ** 2)
        params = {"x": np.array([0.0, -0.2])}  # gradient [1e-6, 0.8]
        exact = lambda p: {"x": scale + p["x"]}
        # resolution ~ 16 * 2.2e-16 * 1e3 / 2e-5 ~ 1.8e-7: a 1e-9 slip on the 1e-6
        # entry (relative error 1e-3) is invisible to finite differences, a 1e-5 one is not.
        slip = lambda d: lambda p: {"x": exact(p)["x"] + np.array([d, 0.0])}
        good, invisible, visible = gradcheck.full_check(
            f, {"exact": exact, "invisible": slip(1e-9), "visible": slip(1e-5)}, params
        )
        self.assertEqual(good.grade, "good")
        self.assertEqual(invisible.grade, "good")
        self.assertEqual(invisible.leaves[0].num_tiny, 1)  # reported as round-off ...
        self.assertGreater(invisible.leaves[0].max_rel_error, 1e-7)  # ... with its error shown
        self.assertEqual(visible.grade, "wrong")
        self.assertEqual(visible.leaves[0].num_tiny, 0)


class SparseCheckTest(absltest.TestCase):
    def test_every_leaf_is_touched(self):
        params = {"a": np.ones(1), "b": np.ones(3), "c": np.ones((20, 10))}
        for seed in range(5):
            idx = gradcheck.select_coordinates(jax.random.key(seed), params, 4)
            self.assertLen(np.unique(idx), 4)
            np.testing.assert_array_equal(idx, np.sort(idx))
            self.assertTrue(np.any(idx == 0) and np.any((idx >= 1) & (idx < 4)))
            self.assertTrue(np.any(idx >= 4))
        picks = {
            tuple(gradcheck.select_coordinates(jax.random.key(s), params, 10)) for s in range(3)
        }
        self.assertLen(picks, 3)
        np.testing.assert_array_equal(
            gradcheck.select_coordinates(jax.random.key(0), params, 500), np.arange(204)
        )
        with self.assertRaisesRegex(ValueError, "number of parameter"):
            gradcheck.select_coordinates(jax.random.key(0), params, 2)


if __name__ == "__main__":
    absltest.main()
