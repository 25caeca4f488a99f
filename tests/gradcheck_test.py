"""Tests for lib/gradcheck.py: finite differences, relative error, grading, kinks."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from lib import backprop, gradcheck, losses, scores

H = 1e-5


def _np(tree):
    return jax.tree.map(np.asarray, tree)


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


class NumericalGradTest(parameterized.TestCase):
    def test_quadratic(self):
        rng = np.random.default_rng(0)
        m = rng.normal(size=(6, 6))
        a, c = m @ m.T + np.eye(6), rng.normal(size=6)
        x = rng.normal(size=6)
        f = lambda p: 0.5 * p @ (a @ p) + c @ p
        num = gradcheck.numerical_grad(f, x)
        self.assertEqual(num.dtype, jnp.float64)
        self.assertLess(float(gradcheck.relative_error(num, a @ x + c)), 1e-8)

    def test_sin_exp_pytree(self):
        rng = np.random.default_rng(1)
        params = {"a": rng.normal(size=(3, 2)), "b": {"c": rng.normal(size=4)}}
        f = lambda p: jnp.sum(jnp.sin(p["a"])) + 2.0 * jnp.sum(jnp.exp(p["b"]["c"]))
        expected = {"a": np.cos(params["a"]), "b": {"c": 2.0 * np.exp(params["b"]["c"])}}
        num = gradcheck.numerical_grad(f, params)
        chex.assert_trees_all_equal_shapes(num, expected)
        self.assertLess(float(gradcheck.relative_error(num, expected)), 1e-8)

    def test_float32_params_are_checked_in_float64(self):
        x = np.linspace(-1.0, 1.0, 4).astype(np.float32)  # no zero: d(p^3) = 0 there
        num = gradcheck.numerical_grad(lambda p: jnp.sum(p**3), x)
        self.assertEqual(num.dtype, jnp.float64)
        self.assertLess(float(gradcheck.relative_error(num, 3.0 * x.astype(np.float64) ** 2)), 1e-8)

    def test_chunked_equals_unchunked(self):
        rng = np.random.default_rng(2)
        params = {"w": rng.normal(size=(5, 7)), "v": rng.normal(size=3)}
        f = lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2) * jnp.sum(p["v"] ** 3)
        whole = gradcheck.numerical_grad(f, params, chunk_size=1000)
        for chunk in (1, 4, 38):  # 38 = all coordinates
            chex.assert_trees_all_close(
                _np(gradcheck.numerical_grad(f, params, chunk_size=chunk)),
                _np(whole),
                rtol=1e-12,
                atol=0,
            )

    @parameterized.parameters(0.0, -1e-5, float("nan"), float("inf"))
    def test_bad_h(self, h):
        with self.assertRaisesRegex(ValueError, "h must be positive"):
            gradcheck.numerical_grad(lambda p: jnp.sum(p), np.ones(2), h=h)

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, "scalar"):
            gradcheck.numerical_grad(lambda p: p**2, np.ones(3))
        with self.assertRaisesRegex(TypeError, "floating-point"):
            gradcheck.numerical_grad(lambda p: jnp.sum(p), np.ones(3, np.int32))
        with self.assertRaisesRegex(ValueError, "chunk_size"):
            gradcheck.numerical_grad(lambda p: jnp.sum(p), np.ones(3), chunk_size=0)
        with self.assertRaisesRegex(ValueError, "indices"):
            gradcheck.finite_differences(lambda p: jnp.sum(p), np.ones(3), np.array([3]))


def _data(n=8, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n).astype(np.int32)


def _linear_params(d=5, k=3, seed=0):
    rng = np.random.default_rng(seed + 10)
    return {"W": rng.normal(size=(k, d)), "b": rng.normal(size=k)}


def _two_layer_params(d=5, hidden=6, k=3, seed=0):
    rng = np.random.default_rng(seed + 20)
    return {
        "W1": rng.normal(size=(hidden, d)),
        "b1": rng.normal(size=hidden),
        "W2": rng.normal(size=(k, hidden)),
        "b2": rng.normal(size=k),
    }


class ModelGradientTest(parameterized.TestCase):
    """jax.grad and lib.backprop against float64 finite differences."""

    @parameterized.parameters(
        ("linear", _linear_params, "linear_softmax"),
        ("two_layer", _two_layer_params, "two_layer_softmax"),
    )
    def test_softmax_models(self, model, init, bp_name):
        x, y = _data()
        params, reg = init(), 0.1
        obj = gradcheck.make_objective(model, "softmax", x, y, reg)
        self.assertEqual(set(obj.grad_fns), {"jax.grad", f"backprop.{bp_name}"})
        # independent transcription of the loss: scores, then the losses module
        score_fn = scores.linear if model == "linear" else scores.two_layer
        with jax.enable_x64(True):
            loss = lambda p: (
                losses.softmax_cross_entropy(score_fn(p, x), y) + losses.l2_penalty(p, reg)
            )
            num = gradcheck.numerical_grad(loss, params)
            _, bp_grads = getattr(backprop, bp_name)(jax.tree.map(jnp.asarray, params), x, y, reg)
            self.assertLess(float(gradcheck.relative_error(num, bp_grads)), 1e-7)
            self.assertLess(float(gradcheck.relative_error(num, jax.grad(loss)(params))), 1e-7)
        for report in gradcheck.full_check(obj.loss, obj.grad_fns, params, kinks=obj.kinks):
            for leaf in report.leaves:
                self.assertLess(leaf.max_rel_error, 1e-7, (report.name, leaf))
                self.assertEqual(leaf.num_checked, np.size(params[leaf.name]))

    def test_linear_hinge_kink_is_flagged(self):
        x, y = _data(n=4)
        params, reg, margin = _linear_params(), 0.05, 1.0
        # Put the hinge margin of example 0, wrong class j, at +0.3h: moving b[j]
        # by -h crosses it.
        j = (y[0] + 1) % 3
        s = x[0] @ params["W"].T + params["b"]
        params["b"][j] -= s[j] - s[y[0]] + margin - 0.3 * H
        obj = gradcheck.make_objective("linear", "hinge", x, y, reg, margin=margin)
        fd = gradcheck.finite_differences(obj.loss, params, kinks=obj.kinks)
        # independent: numpy margins at x +- h e_i for every flat coordinate
        flat = np.concatenate([params["W"].ravel(), params["b"]])
        expected = []
        for i in range(flat.size):
            signs = []
            for step in (H, -H):
                q = flat.copy()
                q[i] += step
                w, b = q[:15].reshape(3, 5), q[15:]
                sc = x @ w.T + b
                m = sc - sc[np.arange(4), y][:, None] + margin
                m[np.arange(4), y] = 1.0
                signs.append(np.sign(m))
            expected.append(bool(np.any(signs[0] != signs[1])))
        np.testing.assert_array_equal(fd.crossed, expected)
        self.assertTrue(fd.crossed[15 + j])
        reports = gradcheck.full_check(obj.loss, obj.grad_fns, params, kinks=obj.kinks)
        self.assertEqual(set(r.name for r in reports), {"jax.grad", "backprop.linear_hinge"})
        for report in reports:
            b_leaf = report.leaves[1]
            self.assertGreaterEqual(b_leaf.num_kinks, 1)
            self.assertGreater(b_leaf.kink_rel_error, 1e-3)  # the kink does spoil it
            for leaf in report.leaves:
                self.assertLess(leaf.max_rel_error, 1e-7, (report.name, leaf))

    def test_relu_kink_is_flagged(self):
        x, y = _data()
        params, reg = _two_layer_params(), 0.1
        z = x[0] @ params["W1"][2] + params["b1"][2]
        params["b1"][2] -= z - 0.3 * H  # ReLU pre-activation (0, 2) at +0.3h
        obj = gradcheck.make_objective("two_layer", "softmax", x, y, reg)
        fd = gradcheck.finite_differences(obj.loss, params, kinks=obj.kinks)
        b1_start = 6 * 5  # ravel order: W1, W2, b1, b2 (sorted keys)
        b1_start += 3 * 6
        self.assertTrue(fd.crossed[b1_start + 2])
        reports = gradcheck.full_check(obj.loss, obj.grad_fns, params, kinks=obj.kinks)
        for report in reports:
            leaves = {l.name: l for l in report.leaves}
            self.assertGreaterEqual(leaves["b1"].num_kinks, 1)
            self.assertGreater(leaves["b1"].kink_rel_error, 1e-3)
            for leaf in report.leaves:
                self.assertLess(leaf.max_rel_error, 1e-7, (report.name, leaf))

    def test_a_wrong_gradient_is_graded_wrong(self):
        x, y = _data()
        obj = gradcheck.make_objective("linear", "softmax", x, y, 0.1)
        good = obj.grad_fns["jax.grad"]
        bad = lambda p: {"W": good(p)["W"], "b": 2.0 * good(p)["b"]}
        reports = gradcheck.full_check(obj.loss, {"good": good, "bad": bad}, _linear_params())
        self.assertEqual([r.grade for r in reports], ["good", "wrong"])
        self.assertTrue(gradcheck.any_wrong(reports))
        self.assertFalse(gradcheck.any_wrong(reports[:1]))
        table = gradcheck.format_report(reports)
        self.assertIn("bad", table)
        self.assertEqual(len(table.splitlines()), 2 + 4)
        with self.assertRaisesRegex(ValueError, "shaped like params"):
            gradcheck.full_check(obj.loss, lambda p: (obj.loss(p), good(p)), _linear_params())

    def test_smooth_coordinates_of_a_kinked_objective_are_graded_strictly(self):
        # A 1e-5 relative slip on one coordinate of a hinge objective that crossed no kink:
        # the objective is smooth there, so the strict band applies ("too high"); the
        # lenient "ok with kinks" is only for kinks the check cannot locate.
        x, y = _data(n=4)
        obj = gradcheck.make_objective("linear", "hinge", x, y, 0.05)
        good = obj.grad_fns["jax.grad"]
        slip = lambda p: {
            "W": good(p)["W"] * (1 + 1e-5 * (np.arange(15) == 3).reshape(3, 5)),
            "b": good(p)["b"],
        }
        params = _linear_params()
        (strict,) = gradcheck.full_check(obj.loss, slip, params, kinks=obj.kinks)
        self.assertEqual(strict.leaves[0].num_kinks, 0)
        self.assertEqual(strict.grade, "too high")
        (lenient,) = gradcheck.full_check(obj.loss, slip, params, has_kinks=True)
        self.assertEqual(lenient.grade, "ok with kinks")
        self.assertTrue(gradcheck.worse_than([strict], "good"))
        self.assertFalse(gradcheck.worse_than([strict], "too high"))

    def test_check_after_training_steps(self):
        x, y = _data()
        kwargs = dict(num_classes=3, hidden=6, seed=0)
        first = gradcheck.check_model("two_layer", "softmax", x, y, 0.1, **kwargs)
        later = gradcheck.check_model(
            "two_layer", "softmax", x, y, 0.1, steps=20, learning_rate=0.5, **kwargs
        )
        for reports in (first, later):
            self.assertFalse(
                gradcheck.worse_than(reports, "good"), gradcheck.format_report(reports)
            )
        # The trained point differs from the initial one: the checks saw other weights.
        self.assertNotEqual(
            [l.max_abs_error for r in first for l in r.leaves],
            [l.max_abs_error for r in later for l in r.leaves],
        )

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

    def test_unknown_names(self):
        x, y = _data()
        with self.assertRaisesRegex(ValueError, "linear, two_layer"):
            gradcheck.make_objective("cnn", "softmax", x, y, 0.1)
        with self.assertRaisesRegex(ValueError, "softmax, hinge"):
            gradcheck.make_objective("linear", "l1", x, y, 0.1)


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

    def test_sparse_report(self):
        x, y = _data()
        params = _two_layer_params()
        obj = gradcheck.make_objective("two_layer", "softmax", x, y, 0.1)
        reports = gradcheck.sparse_check(
            obj.loss, obj.grad_fns, params, jax.random.key(0), 6, kinks=obj.kinks
        )
        for report in reports:
            self.assertEqual([l.name for l in report.leaves], ["W1", "W2", "b1", "b2"])
            self.assertEqual(sum(l.num_checked for l in report.leaves), 6)
            for leaf in report.leaves:
                self.assertGreaterEqual(leaf.num_checked, 1)
                self.assertLess(leaf.max_rel_error, 1e-7)
        with self.assertRaisesRegex(ValueError, "PRNG key"):
            gradcheck.check(obj.loss, obj.grad_fns, params, num_checks=6)


class CheckModelTest(absltest.TestCase):
    def test_digits_like_problem_has_no_wrong_gradient(self):
        x, y = _data(n=30, d=16, k=10, seed=3)
        reports = gradcheck.check_model("linear", "hinge", x, y, 1e-3, num_classes=10)
        self.assertLen(reports, 2)
        self.assertFalse(gradcheck.any_wrong(reports))
        self.assertEqual(sum(l.num_checked for l in reports[0].leaves), 170)
        sparse = gradcheck.check_model(
            "two_layer",
            "softmax",
            x,
            y,
            1e-3,
            num_classes=10,
            hidden=10,
            num_checks=20,
            max_full_params=100,
        )
        self.assertEqual(sum(l.num_checked for l in sparse[0].leaves), 20)
        self.assertFalse(gradcheck.any_wrong(sparse))


if __name__ == "__main__":
    absltest.main()
