"""Tests for lib.backprop: the notes' circuit, agreement with jax.grad and with
numpy finite differences in float64, jit with traced hyperparameters, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import backprop, losses, scores

# (N, D, K): a single example, a small batch, more classes than features.
SHAPES = [(1, 3, 2), (5, 4, 3), (8, 3, 10)]
REGS = [0.0, 0.37]
HIDDEN = 6


def _cases():
    return [
        {"testcase_name": f"n{n}_d{d}_k{k}_reg{reg}", "shape": (n, d, k), "reg": reg}
        for n, d, k in SHAPES
        for reg in REGS
    ]


def _data(shape, seed, two_layer=False):
    """float64 random params (unit scale, nonzero biases), inputs and labels."""
    n, d, k = shape
    keys = jax.random.split(jax.random.key(seed), 6)
    normal = lambda i, s: jax.random.normal(keys[i], s, jnp.float64)
    if two_layer:
        params = {
            "W1": normal(0, (HIDDEN, d)),
            "b1": 0.5 * normal(1, (HIDDEN,)),
            "W2": normal(2, (k, HIDDEN)),
            "b2": normal(3, (k,)),
        }
    else:
        params = {"W": normal(0, (k, d)), "b": normal(1, (k,))}
    x = normal(4, (n, d))
    y = jax.random.randint(keys[5], (n,), 0, k)
    return params, x, y


class SigmoidNeuronTest(absltest.TestCase):
    def test_notes_circuit(self):
        w, x = jnp.array([2.0, -3.0, -3.0]), jnp.array([-1.0, -2.0])
        f, grads = backprop.sigmoid_neuron(w, x)
        np.testing.assert_allclose(f, 0.73, atol=5e-3)
        np.testing.assert_allclose(grads["w"], [-0.20, -0.39, 0.20], atol=5e-3)
        np.testing.assert_allclose(grads["x"], [0.39, -0.59], atol=5e-3)
        # jax.grad of the forward function in scores gives the same numbers.
        dw, dx = jax.grad(scores.sigmoid_neuron, argnums=(0, 1))(w, x)
        np.testing.assert_allclose(grads["w"], dw, rtol=1e-6)
        np.testing.assert_allclose(grads["x"], dx, rtol=1e-6)

    def test_matches_jax_grad_float64(self):
        with jax.enable_x64(True):
            w = jax.random.normal(jax.random.key(0), (3,), jnp.float64)
            x = jax.random.normal(jax.random.key(1), (2,), jnp.float64)
            f, grads = backprop.sigmoid_neuron(w, x)
            ref_f = scores.sigmoid_neuron(w, x)
            dw, dx = jax.grad(scores.sigmoid_neuron, argnums=(0, 1))(w, x)
            chex.assert_trees_all_close(
                (f, grads), (ref_f, {"w": dw, "x": dx}), rtol=1e-12, atol=1e-14
            )

    def test_bad_shapes(self):
        with self.assertRaisesRegex(ValueError, r"x of shape \(2,\).*got \(3,\) and \(3,\)"):
            backprop.sigmoid_neuron(jnp.ones(3), jnp.ones(3))


def _linear_softmax_ref(params, x, y, reg):
    return losses.softmax_cross_entropy(scores.linear(params, x), y) + losses.l2_penalty(
        params, reg
    )


def _linear_hinge_ref(params, x, y, reg, margin):
    return losses.multiclass_hinge(scores.linear(params, x), y, margin) + losses.l2_penalty(
        params, reg
    )


def _two_layer_softmax_ref(params, x, y, reg):
    return losses.softmax_cross_entropy(scores.two_layer(params, x), y) + losses.l2_penalty(
        params, reg
    )


# Jitted once at module level (reg and margin traced), so each shape compiles
# one program per function instead of one per primitive per test.
_PAIRS = {
    "linear_softmax": (
        jax.jit(backprop.linear_softmax),
        jax.jit(jax.value_and_grad(_linear_softmax_ref)),
    ),
    "linear_hinge": (
        jax.jit(backprop.linear_hinge),
        jax.jit(jax.value_and_grad(_linear_hinge_ref)),
    ),
    "two_layer_softmax": (
        jax.jit(backprop.two_layer_softmax),
        jax.jit(jax.value_and_grad(_two_layer_softmax_ref)),
    ),
}


class AgainstAutodiffTest(parameterized.TestCase):
    """Every hand-written backward pass equals jax.value_and_grad of
    (scores -> losses + l2_penalty) in float64."""

    def _compare(self, name, params, *args):
        by_hand, reference = _PAIRS[name]
        loss, grads = by_hand(params, *args)
        ref_loss, ref_grads = reference(params, *args)
        self.assertEqual(loss.dtype, jnp.float64)
        chex.assert_trees_all_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_close(grads, ref_grads, rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)

    @parameterized.named_parameters(*_cases())
    def test_linear_softmax(self, shape, reg):
        with jax.enable_x64(True):
            params, x, y = _data(shape, seed=0)
            self._compare("linear_softmax", params, x, y, reg)

    @parameterized.named_parameters(*_cases())
    def test_linear_hinge(self, shape, reg):
        margin = 1.0
        with jax.enable_x64(True):
            params, x, y = _data(shape, seed=1)
            # Random float data: no margin is exactly 0 (no kink), and for the
            # larger batches both active and inactive margins occur.
            s = np.asarray(x @ params["W"].T + params["b"])
            m = s - s[np.arange(len(y)), np.asarray(y)][:, None] + margin
            self.assertTrue(np.all(np.abs(m) > 1e-8))
            if shape[0] > 1:
                self.assertTrue(np.any(m > 0) and np.any(m < 0))
            self._compare("linear_hinge", params, x, y, reg, margin)

    @parameterized.named_parameters(*_cases())
    def test_two_layer_softmax(self, shape, reg):
        with jax.enable_x64(True):
            params, x, y = _data(shape, seed=2, two_layer=True)
            z1 = np.asarray(x @ params["W1"].T + params["b1"])
            self.assertTrue(np.all(np.abs(z1) > 1e-8))  # no ReLU kink hit
            self.assertTrue(np.any(z1 > 0) and np.any(z1 < 0))  # both gate states
            self._compare("two_layer_softmax", params, x, y, reg)

    def test_hinge_other_margin(self):
        with jax.enable_x64(True):
            params, x, y = _data((5, 4, 3), seed=3)
            self._compare("linear_hinge", params, x, y, 0.1, 2.5)

    def test_regulariser_fork_adds_to_data_gradient(self):
        # The W gradient at reg > 0 is the reg = 0 gradient plus 2 * reg * W.
        with jax.enable_x64(True):
            params, x, y = _data((5, 4, 3), seed=4)
            _, g0 = backprop.linear_softmax(params, x, y, 0.0)
            _, g1 = backprop.linear_softmax(params, x, y, 0.3)
            chex.assert_trees_all_close(g1["W"], g0["W"] + 0.6 * params["W"], rtol=1e-12)
            chex.assert_trees_all_close(g1["b"], g0["b"], rtol=1e-12)


def _np_loss(kind, params, x, y, reg, margin=1.0):
    """Independent float64 numpy transcription of the losses used above."""
    s = x @ params["W"].T + params["b"]
    n = len(y)
    if kind == "softmax":
        shifted = s - s.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        data = -np.log(probs[np.arange(n), y]).mean()
    else:
        m = np.maximum(0.0, s - s[np.arange(n), y][:, None] + margin)
        m[np.arange(n), y] = 0.0
        data = m.sum() / n
    return data + reg * np.sum(params["W"] ** 2)


class AgainstFiniteDifferencesTest(parameterized.TestCase):
    @parameterized.parameters(
        ("softmax", backprop.linear_softmax), ("hinge", backprop.linear_hinge)
    )
    def test_centered_differences(self, kind, fn):
        rng = np.random.default_rng(0)
        params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3)}
        x, y, reg, h = rng.standard_normal((5, 4)), np.array([0, 2, 1, 1, 0]), 0.2, 1e-6
        with jax.enable_x64(True):
            loss, grads = fn(
                {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x), jnp.asarray(y), reg
            )
        np.testing.assert_allclose(loss, _np_loss(kind, params, x, y, reg), rtol=1e-12)
        for name, value in params.items():
            numeric = np.zeros_like(value)
            for idx in np.ndindex(value.shape):
                plus, minus = value.copy(), value.copy()
                plus[idx] += h
                minus[idx] -= h
                numeric[idx] = (
                    _np_loss(kind, {**params, name: plus}, x, y, reg)
                    - _np_loss(kind, {**params, name: minus}, x, y, reg)
                ) / (2 * h)
            np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8)


class KinkConventionTest(absltest.TestCase):
    """At an exact kink max(0, 0) has no gradient; the two implementations pick
    different subgradients, and both are valid."""

    def test_hinge_at_an_exact_kink(self):
        # One example of class 0 with scores [1, 0]: margin 0 - 1 + 1 = 0 exactly.
        params = {"W": jnp.array([[1.0, 0.0], [0.0, 0.0]]), "b": jnp.zeros(2)}
        x, y = jnp.array([[1.0, 0.0]]), jnp.array([0])
        _, grads = backprop.linear_hinge(params, x, y, 0.0)
        loss_fn = lambda p: losses.multiclass_hinge(scores.linear(p, x), y)
        auto = jax.grad(loss_fn)(params)
        # backprop: the hinge counts as closed at 0 (subgradient 0), as the notes'
        # code does with `margins > 0`.
        np.testing.assert_array_equal(grads["W"], np.zeros((2, 2)))
        # jax.grad of jnp.maximum(0, m) at m = 0 splits the gradient: 0.5.
        np.testing.assert_array_equal(auto["W"], np.array([[-0.5, 0.0], [0.5, 0.0]]))


class JitAndBadInputTest(absltest.TestCase):
    def test_jit_with_traced_reg_and_margin_traces_once(self):
        params = scores.init_linear(jax.random.key(0), 4, 3, scale=1.0)
        x = jax.random.normal(jax.random.key(1), (5, 4))
        y = jnp.array([0, 1, 2, 1, 0])
        hinge = jax.jit(chex.assert_max_traces(backprop.linear_hinge, n=1))
        for reg, margin in [(0.0, 1.0), (0.5, 2.0)]:
            got = hinge(params, x, y, reg, margin)
            chex.assert_trees_all_close(
                got, backprop.linear_hinge(params, x, y, reg, margin), rtol=1e-5, atol=1e-6
            )
        two = scores.init_two_layer(jax.random.key(2), 4, 6, 3)
        fn = jax.jit(chex.assert_max_traces(backprop.two_layer_softmax, n=1))
        for reg in (0.0, 0.1):
            chex.assert_trees_all_close(
                fn(two, x, y, reg), backprop.two_layer_softmax(two, x, y, reg), rtol=1e-5, atol=1e-6
            )

    def test_large_scores_stay_finite(self):
        params = {"W": jnp.array([[1e4, 0.0], [-1e4, 0.0]]), "b": jnp.zeros(2)}
        x, y = jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([1, 1])
        loss, grads = backprop.linear_softmax(params, x, y, 0.0)
        chex.assert_tree_all_finite((loss, grads))
        np.testing.assert_allclose(
            loss, losses.softmax_cross_entropy(scores.linear(params, x), y), rtol=1e-6
        )

    def test_bad_input(self):
        params = scores.init_linear(jax.random.key(0), 4, 3)
        x, y = jnp.ones((5, 4)), jnp.array([0, 1, 2, 1, 0])
        with self.assertRaisesRegex(ValueError, r"x has 2 features.*expects 4"):
            backprop.linear_softmax(params, jnp.ones((5, 2)), y, 0.0)
        with self.assertRaisesRegex(ValueError, r"x must be 2-D"):
            backprop.linear_hinge(params, jnp.ones(4), y[:1], 0.0)
        with self.assertRaisesRegex(TypeError, r"labels must be integer"):
            backprop.linear_hinge(params, x, y.astype(jnp.float32), 0.0)
        with self.assertRaisesRegex(ValueError, r"labels must lie in \[0, 3\)"):
            backprop.linear_softmax(params, x, y + 1, 0.0)
        with self.assertRaisesRegex(ValueError, r"init_two_layer"):
            backprop.two_layer_softmax(params, x, y, 0.0)
        two = scores.init_two_layer(jax.random.key(0), 4, 6, 3)
        with self.assertRaisesRegex(ValueError, r"scores have 5 rows.*labels have 4"):
            backprop.two_layer_softmax(two, x, y[:4], 0.0)


if __name__ == "__main__":
    absltest.main()
