"""Tests for lib/model_check.py: jax.grad and lib.backprop of the library's models against
float64 finite differences, kinks from the registries, a model added by one entry."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import backprop, gradcheck, losses, model_check, scores

H = 1e-5


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
        obj = model_check.make_objective(model, "softmax", x, y, reg)
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
        obj = model_check.make_objective("linear", "hinge", x, y, reg, margin=margin)
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
        self.assertEqual({r.name for r in reports}, {"jax.grad", "backprop.linear_hinge"})
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
        obj = model_check.make_objective("two_layer", "softmax", x, y, reg)
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
        obj = model_check.make_objective("linear", "softmax", x, y, 0.1)
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
        obj = model_check.make_objective("linear", "hinge", x, y, 0.05)
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
        kwargs = {"num_classes": 3, "hidden": 6, "seed": 0}
        first = model_check.check_model("two_layer", "softmax", x, y, 0.1, **kwargs)
        later = model_check.check_model(
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

    def test_unknown_names(self):
        x, y = _data()
        with self.assertRaisesRegex(ValueError, "linear, two_layer"):
            model_check.make_objective("cnn", "softmax", x, y, 0.1)
        with self.assertRaisesRegex(ValueError, "softmax, hinge"):
            model_check.make_objective("linear", "l1", x, y, 0.1)


class SparseCheckTest(absltest.TestCase):
    def test_sparse_report(self):
        x, y = _data()
        params = _two_layer_params()
        obj = model_check.make_objective("two_layer", "softmax", x, y, 0.1)
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
        reports = model_check.check_model("linear", "hinge", x, y, 1e-3, num_classes=10)
        self.assertLen(reports, 2)
        self.assertFalse(gradcheck.any_wrong(reports))
        self.assertEqual(sum(l.num_checked for l in reports[0].leaves), 170)
        sparse = model_check.check_model(
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


def _scores_without_bias(params, x):
    return jnp.asarray(x) @ params["W"].T


def _init_without_bias(key, num_features, num_classes, *, dtype=jnp.float32):
    return {"W": 0.1 * jax.random.normal(key, (num_classes, num_features), dtype)}


class RegistryTest(absltest.TestCase):
    def test_a_new_model_is_one_registry_entry(self):
        x, y = _data()
        toy = scores.Model(_scores_without_bias, _init_without_bias)
        with mock.patch.dict(scores.MODELS, {"toy": toy}):
            for loss in ("softmax", "hinge"):  # hinge: the loss's kinks, none from the model
                reports = model_check.check_model("toy", loss, x, y, 0.1, num_classes=3)
                self.assertEqual([r.name for r in reports], ["jax.grad"])  # no backprop entry
                self.assertEqual([l.name for l in reports[0].leaves], ["W"])
                self.assertEqual(reports[0].grade, "good", gradcheck.format_report(reports))
        self.assertNotIn("toy", scores.MODELS)


if __name__ == "__main__":
    absltest.main()
