"""Tests for lib.losses: hand-computed values, numpy/optax transcriptions, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from lib import losses

# The notes' SVM example: three images (cat, car, frog), classes (cat, car, frog).
NOTES_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]], np.float32)
NOTES_LABELS = np.array([0, 1, 2], np.int32)


def _np_softmax_ce(s, y):
    """float64 numpy transcription: L_i = -s_y + log sum_j exp(s_j - max) + max."""
    s = np.asarray(s, np.float64)
    m = s.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(s - m).sum(axis=1)) + m[:, 0]
    return np.mean(log_z - s[np.arange(len(y)), y])


def _np_hinge(s, y, margin):
    """The notes' unvectorised L_i, a loop over classes, averaged over the batch."""
    s = np.asarray(s, np.float64)
    total = 0.0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if j != y[i]:
                total += max(0.0, s[i, j] - s[i, y[i]] + margin)
    return total / s.shape[0]


class SoftmaxTest(parameterized.TestCase):
    @parameterized.parameters(2, 3, 10)
    def test_zero_scores_give_log_k(self, k):
        s = jnp.zeros((4, k))
        y = jnp.arange(4) % k
        np.testing.assert_allclose(losses.softmax_cross_entropy(s, y), np.log(k), rtol=1e-6)

    def test_notes_example(self):
        # The notes: softmax of [3.2, 5.1, -1.7] for class 0 -> -log(0.13) ~ 2.04.
        loss = losses.softmax_cross_entropy(NOTES_SCORES[:1], NOTES_LABELS[:1])
        np.testing.assert_allclose(loss, 2.04, atol=5e-3)
        exact = -3.2 + np.log(np.exp(3.2) + np.exp(5.1) + np.exp(-1.7))
        np.testing.assert_allclose(loss, exact, rtol=1e-6)

    def test_large_scores_are_finite_and_exact(self):
        s = np.array([[1e4, -1e4, 0.0], [1e4, 1e4 - 1.0, 5e3], [-1e4, -1e4, -1e4]], np.float32)
        y = np.array([1, 1, 2], np.int32)
        with np.errstate(over="ignore"):
            self.assertTrue(np.isinf(np.exp(s.astype(np.float64)).sum()))  # naive overflows
        loss = losses.softmax_cross_entropy(s, y)
        chex.assert_tree_all_finite(loss)
        np.testing.assert_allclose(loss, _np_softmax_ce(s, y), rtol=1e-6)

    def test_random_matches_numpy_and_optax(self):
        s = 3.0 * jax.random.normal(jax.random.key(0), (16, 7))
        y = jax.random.randint(jax.random.key(1), (16,), 0, 7)
        loss = losses.softmax_cross_entropy(s, y)
        np.testing.assert_allclose(loss, _np_softmax_ce(s, np.asarray(y)), rtol=1e-5)
        ref = optax.softmax_cross_entropy_with_integer_labels(s, y).mean()
        np.testing.assert_allclose(loss, ref, rtol=1e-6)


class HingeTest(parameterized.TestCase):
    def test_notes_example(self):
        # cat: max(0, 5.1-3.2+1) + max(0, -1.7-3.2+1) = 2.9; car: 0;
        # frog: max(0, 2.2+3.1+1) + max(0, 2.5+3.1+1) = 12.9; mean 15.8 / 3.
        per_example = [
            losses.multiclass_hinge(NOTES_SCORES[i : i + 1], NOTES_LABELS[i : i + 1])
            for i in range(3)
        ]
        np.testing.assert_allclose(per_example, [2.9, 0.0, 12.9], rtol=1e-6)
        np.testing.assert_allclose(
            losses.multiclass_hinge(NOTES_SCORES, NOTES_LABELS), 15.8 / 3, rtol=1e-6
        )

    def test_exactly_zero_when_margins_satisfied(self):
        s = jnp.array([[5.0, 1.0, 3.9], [0.0, -2.0, 10.0]])
        y = jnp.array([0, 2])
        self.assertEqual(float(losses.multiclass_hinge(s, y)), 0.0)
        # margin 1.2 makes row 0 violate by 3.9 - 5 + 1.2 = 0.1, averaged: 0.05.
        np.testing.assert_allclose(losses.multiclass_hinge(s, y, margin=1.2), 0.05, rtol=1e-5)

    @parameterized.parameters(0.0, 1.0, 2.5)
    def test_random_matches_loop(self, margin):
        s = jax.random.normal(jax.random.key(0), (12, 5))
        y = jax.random.randint(jax.random.key(1), (12,), 0, 5)
        np.testing.assert_allclose(
            losses.multiclass_hinge(s, y, margin), _np_hinge(s, np.asarray(y), margin), rtol=1e-5
        )

    def test_traced_margin_and_labels_under_jit(self):
        fn = jax.jit(chex.assert_max_traces(losses.multiclass_hinge, n=1))
        a = fn(NOTES_SCORES, NOTES_LABELS, 1.0)
        b = fn(NOTES_SCORES, NOTES_LABELS, 0.0)  # new margin, same program
        # margin 0: cat 5.1 - 3.2 = 1.9; car 0; frog 5.3 + 5.6 = 10.9.
        np.testing.assert_allclose([a, b], [15.8 / 3, (1.9 + 0.0 + 10.9) / 3], rtol=1e-6)


class L2AndAccuracyTest(absltest.TestCase):
    def test_l2_penalty_hand_computed_ignores_biases(self):
        params = {"W": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([100.0, -7.0])}
        np.testing.assert_allclose(losses.l2_penalty(params, 0.1), 0.1 * 30.0, rtol=1e-6)
        two = {
            "W1": jnp.array([[1.0, -2.0]]),
            "b1": jnp.array([5.0]),
            "W2": jnp.array([[3.0]]),
            "b2": jnp.array([7.0]),
        }
        np.testing.assert_allclose(losses.l2_penalty(two, 0.5), 7.0, rtol=1e-6)
        self.assertEqual(float(losses.l2_penalty(two, 0.0)), 0.0)
        # reg may be traced.
        np.testing.assert_allclose(jax.jit(losses.l2_penalty)(two, 2.0), 28.0, rtol=1e-6)

    def test_l2_penalty_without_weights_raises(self):
        with self.assertRaisesRegex(ValueError, r"no weight leaves.*\['w'\].*name weight"):
            losses.l2_penalty({"w": jnp.ones(3), "b": jnp.ones(1)}, 0.1)

    def test_accuracy(self):
        s = jnp.array([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0], [5.0, 4.0]])
        np.testing.assert_allclose(losses.accuracy(s, jnp.array([1, 0, 0, 0])), 0.75)
        np.testing.assert_allclose(losses.accuracy(NOTES_SCORES, NOTES_LABELS), 1 / 3, rtol=1e-6)


class BadInputTest(parameterized.TestCase):
    @parameterized.parameters(
        losses.softmax_cross_entropy, losses.multiclass_hinge, losses.accuracy
    )
    def test_shapes_dtypes_and_ranges(self, fn):
        s = jnp.zeros((3, 4))
        with self.assertRaisesRegex(ValueError, r"scores must be 2-D .*got shape \(4,\)"):
            fn(jnp.zeros(4), jnp.array([0]))
        with self.assertRaisesRegex(ValueError, r"labels must be 1-D.*argmax"):
            fn(s, jnp.zeros((3, 4), jnp.int32))
        with self.assertRaisesRegex(TypeError, r"labels must be integer.*float32.*astype"):
            fn(s, jnp.array([0.0, 1.0, 2.0]))
        with self.assertRaisesRegex(ValueError, r"scores have 3 rows.*labels have 2"):
            fn(s, jnp.array([0, 1]))
        with self.assertRaisesRegex(ValueError, r"\[0, 4\) for 4 classes.*\[0, 4\]"):
            fn(s, jnp.array([0, 4, 1]))
        with self.assertRaisesRegex(ValueError, r"\[0, 4\).*\[-1, 2\]"):
            fn(s, np.array([-1, 2, 1]))
        with self.assertRaisesRegex(TypeError, r"scores must be floating"):
            fn(jnp.zeros((3, 4), jnp.int32), jnp.array([0, 1, 2]))

    def test_shape_checks_run_under_jit(self):
        with self.assertRaisesRegex(TypeError, "labels must be integer"):
            jax.jit(losses.softmax_cross_entropy)(jnp.zeros((2, 3)), jnp.zeros(2))

    def test_unknown_loss_name(self):
        self.assertIs(losses.get("softmax"), losses.softmax_cross_entropy)
        self.assertIs(losses.get("hinge"), losses.multiclass_hinge)
        with self.assertRaisesRegex(ValueError, r"^unknown loss 'foo'; valid: hinge, softmax$"):
            losses.get("foo")


if __name__ == "__main__":
    absltest.main()
