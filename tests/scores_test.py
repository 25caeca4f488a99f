"""Tests for lib.scores: shapes, inits, numpy transcriptions, dropout, bad input, precision."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import backprop, ensemble, scores, settings, train


def _np_two_layer(params, x):
    """Plain-numpy float64 transcription of the two-layer net (no dropout)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h = np.maximum(0.0, np.asarray(x, np.float64) @ p["W1"].T + p["b1"])
    return h @ p["W2"].T + p["b2"]


class LinearTest(parameterized.TestCase):
    def test_init_shapes_dtypes_and_scale(self):
        params = scores.init_linear(jax.random.key(0), 300, 50)
        chex.assert_shape(params["W"], (50, 300))
        chex.assert_shape(params["b"], (50,))
        self.assertEqual(params["W"].dtype, jnp.float32)
        np.testing.assert_array_equal(params["b"], 0.0)
        # 15000 draws of 0.001 * N(0, 1): sample std within 3%.
        np.testing.assert_allclose(np.std(params["W"]), 1e-3, rtol=0.03)
        big = scores.init_linear(jax.random.key(0), 300, 50, scale=0.5)
        np.testing.assert_allclose(np.std(big["W"]), 0.5, rtol=0.03)

    def test_init_float64(self):
        with jax.enable_x64(True):
            params = scores.init_linear(jax.random.key(0), 4, 3, dtype=jnp.float64)
            self.assertEqual(params["W"].dtype, jnp.float64)
            self.assertEqual(params["b"].dtype, jnp.float64)

    def test_linear_matches_per_example_formula(self):
        # The notes' f(x_i, W, b) = W x_i + b, one example at a time, in numpy.
        kw, kb, kx = jax.random.split(jax.random.key(1), 3)
        params = {
            "W": jax.random.normal(kw, (3, 5)),
            "b": jax.random.normal(kb, (3,)),
        }
        x = jax.random.normal(kx, (4, 5))
        s = scores.linear(params, x)
        chex.assert_shape(s, (4, 3))
        w, b = np.asarray(params["W"], np.float64), np.asarray(params["b"], np.float64)
        expected = np.stack([w @ xi + b for xi in np.asarray(x, np.float64)])
        np.testing.assert_allclose(s, expected, rtol=1e-5, atol=1e-5)

    def test_linear_jits_once(self):
        params = scores.init_linear(jax.random.key(0), 5, 3)
        fn = jax.jit(chex.assert_max_traces(scores.linear, n=1))
        s1 = fn(params, jnp.ones((2, 5)))
        s2 = fn(params, 2.0 * jnp.ones((2, 5)))  # same shapes: no retrace
        chex.assert_trees_all_close(s2, 2.0 * s1 - params["b"])

    def test_linear_bad_input(self):
        params = scores.init_linear(jax.random.key(0), 5, 3)
        with self.assertRaisesRegex(ValueError, r"x must be 2-D.*\(5,\).*x\[None, :\]"):
            scores.linear(params, jnp.ones((5,)))
        with self.assertRaisesRegex(
            ValueError,
            r"x has 4 features \(shape \(2, 4\)\).*expects 5 \(shape \(3, 5\)\)"
            r".*num_features=4",
        ):
            scores.linear(params, jnp.ones((2, 4)))
        with self.assertRaisesRegex(ValueError, r"keys \['W', 'b'\].*init_linear"):
            scores.linear({"W1": params["W"]}, jnp.ones((2, 5)))
        with self.assertRaisesRegex(ValueError, r"bias for W must have shape \(3,\)"):
            scores.linear({"W": params["W"], "b": jnp.zeros(4)}, jnp.ones((2, 5)))
        with self.assertRaisesRegex(ValueError, "num_features and num_classes"):
            scores.init_linear(jax.random.key(0), 0, 3)


class TwoLayerTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.params = scores.init_two_layer(jax.random.key(0), 6, 8, 3)
        self.x = jax.random.normal(jax.random.key(1), (5, 6))

    def test_init_shapes_and_he_scale(self):
        p = scores.init_two_layer(jax.random.key(0), 400, 100, 60)
        chex.assert_shape(
            [p["W1"], p["b1"], p["W2"], p["b2"]], [(100, 400), (100,), (60, 100), (60,)]
        )
        np.testing.assert_array_equal(p["b1"], 0.0)
        np.testing.assert_array_equal(p["b2"], 0.0)
        np.testing.assert_allclose(np.std(p["W1"]), np.sqrt(2 / 400), rtol=0.03)
        np.testing.assert_allclose(np.std(p["W2"]), np.sqrt(2 / 100), rtol=0.03)
        q = scores.init_two_layer(jax.random.key(0), 400, 100, 60, scale=0.1)
        np.testing.assert_allclose(np.std(q["W1"]), 0.1, rtol=0.03)
        np.testing.assert_allclose(np.std(q["W2"]), 0.1, rtol=0.03)

    def test_matches_numpy(self):
        s = scores.two_layer(self.params, self.x)
        chex.assert_shape(s, (5, 3))
        np.testing.assert_allclose(s, _np_two_layer(self.params, self.x), rtol=1e-5, atol=1e-5)

    def test_dropout_zero_with_key_is_exactly_no_dropout(self):
        plain = scores.two_layer(self.params, self.x)
        zero = scores.two_layer(self.params, self.x, key=jax.random.key(3), dropout=0.0)
        chex.assert_trees_all_equal(plain, zero)

    def test_traced_dropout_vmaps(self):
        key = jax.random.key(3)
        fn = jax.jit(jax.vmap(lambda d: scores.two_layer(self.params, self.x, key, d)))
        out = fn(jnp.array([0.0, 0.5, 0.9]))
        chex.assert_shape(out, (3, 5, 3))
        # dropout = 0 inside the compiled, batched program: same scores up to
        # float32 rounding of the batched matmul.
        chex.assert_trees_all_close(
            out[0], scores.two_layer(self.params, self.x), rtol=1e-6, atol=1e-6
        )
        self.assertFalse(np.allclose(out[1], out[0]))

    def test_inverted_dropout_mask(self):
        mask = scores.dropout_mask(jax.random.key(0), (400, 250), 0.5)
        # Entries are 0 (dropped) or 1/p = 2 (kept and rescaled) ...
        self.assertTrue(np.all((mask == 0.0) | (mask == 2.0)))
        # ... about half are kept, and the expectation is kept at 1
        # (100k entries of variance 1: std of the mean ~ 0.003).
        np.testing.assert_allclose(np.mean(mask == 2.0), 0.5, atol=0.01)
        np.testing.assert_allclose(np.mean(mask), 1.0, atol=0.02)
        other = scores.dropout_mask(jax.random.key(1), (400, 250), 0.5)
        self.assertGreater(np.mean(mask != other), 0.4)  # ~0.5 expected
        np.testing.assert_array_equal(scores.dropout_mask(jax.random.key(0), (10, 10), 0.0), 1.0)

    def test_dropout_inside_two_layer(self):
        # W2 = I and b2 = 0 expose the hidden layer as the scores, so dropped
        # units read 0 and kept ones read h / p.
        d, h = 6, 40
        params = scores.init_two_layer(jax.random.key(0), d, h, h)
        params = {**params, "W2": jnp.eye(h), "b2": jnp.zeros(h)}
        x = jax.random.normal(jax.random.key(1), (50, d))
        hidden = scores.two_layer(params, x)
        k1, k2 = jax.random.split(jax.random.key(2))
        out1 = scores.two_layer(params, x, key=k1, dropout=0.75)
        out2 = scores.two_layer(params, x, key=k2, dropout=0.75)
        active = np.asarray(hidden) > 0
        self.assertGreater(active.mean(), 0.2)
        ratio = np.asarray(out1)[active] / np.asarray(hidden)[active]
        np.testing.assert_allclose(ratio[ratio != 0], 4.0, rtol=1e-5)
        np.testing.assert_allclose(np.mean(ratio == 0), 0.75, atol=0.05)
        self.assertFalse(np.array_equal(out1, out2))  # different keys, masks

    @parameterized.parameters(1.0, -0.1, 1.5)
    def test_dropout_out_of_range(self, rate):
        with self.assertRaisesRegex(ValueError, r"dropout .* must be in \[0, 1\)"):
            scores.two_layer(self.params, self.x, key=jax.random.key(0), dropout=rate)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, r"x has 4 features .*W1 expects 6"):
            scores.two_layer(self.params, jnp.ones((2, 4)))
        with self.assertRaisesRegex(ValueError, r"x must be 2-D"):
            scores.two_layer(self.params, jnp.ones((6,)))
        with self.assertRaisesRegex(ValueError, r"init_two_layer"):
            scores.two_layer({"W": 1.0, "b": 0.0}, self.x)


class SigmoidNeuronTest(absltest.TestCase):
    def test_notes_circuit_with_jax_grad(self):
        # The notes: w = [2, -3, -3], x = [-1, -2] -> f = 0.73,
        # dw = [-0.20, -0.39, 0.20], dx = [0.39, -0.59] (2 decimals).
        w, x = jnp.array([2.0, -3.0, -3.0]), jnp.array([-1.0, -2.0])
        f = scores.sigmoid_neuron(w, x)
        dw, dx = jax.grad(scores.sigmoid_neuron, argnums=(0, 1))(w, x)
        np.testing.assert_allclose(f, 0.73, atol=5e-3)
        np.testing.assert_allclose(dw, [-0.20, -0.39, 0.20], atol=5e-3)
        np.testing.assert_allclose(dx, [0.39, -0.59], atol=5e-3)
        # And exactly: w.x + b = 1, so f = sigma(1) and df/d(dot) = sigma(1)(1 - sigma(1)).
        sig = 1 / (1 + np.exp(-1.0))
        np.testing.assert_allclose(f, sig, rtol=1e-6)
        np.testing.assert_allclose(dw, sig * (1 - sig) * np.array([-1, -2, 1]), rtol=1e-6)

    def test_bad_shapes(self):
        with self.assertRaisesRegex(ValueError, r"w of shape \(3,\).*got \(2,\)"):
            scores.sigmoid_neuron(jnp.ones(2), jnp.ones(2))


def _dot_precisions(fn, *args) -> list:
    """The ``precision`` of every dot_general in ``fn``'s jaxpr, sub-jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                    if hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


class PrecisionTest(parameterized.TestCase):
    """Every product asks for full float32 (scores.PRECISION): a GPU's default is TF32."""

    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)

    def assert_all_highest(self, precisions, at_least):
        self.assertGreaterEqual(len(precisions), at_least)
        self.assertEqual(set(precisions), {self.highest})

    @parameterized.product(model=["linear", "two_layer"], optimizer=["momentum", "newton"])
    def test_training_products(self, model, optimizer):
        x = jax.random.normal(jax.random.key(0), (16, 6))
        y = jnp.arange(16) % 3
        data = train.Data(x, y, x[:4], y[:4])
        setup = settings.Setup(
            6,
            3,
            model,
            hidden=5,
            optimizer=optimizer,
            num_epochs=1,
            batch_size=4,
            train_eval_size=4,
        )
        precisions = _dot_precisions(lambda k: train.fit(k, {}, data, setup), jax.random.key(1))
        # Forward and dW per layer, plus the two accuracies' forward passes.
        self.assert_all_highest(precisions, 4 if model == "linear" else 8)

    def test_backprop_and_ensemble_products(self):
        x, y = jnp.ones((5, 4)), jnp.arange(5) % 3
        lin = scores.init_linear(jax.random.key(0), 4, 3)
        net = scores.init_two_layer(jax.random.key(0), 4, 6, 3)
        self.assert_all_highest(_dot_precisions(backprop.linear_softmax, lin, x, y, 0.1), 2)
        self.assert_all_highest(_dot_precisions(backprop.linear_hinge, lin, x, y, 0.1), 2)
        self.assert_all_highest(_dot_precisions(backprop.two_layer_softmax, net, x, y, 0.1), 5)
        stacked = jax.tree.map(lambda a: jnp.stack([a, a]), lin)
        self.assert_all_highest(_dot_precisions(ensemble.member_scores_linear_wide, stacked, x), 1)


class LookupTest(absltest.TestCase):
    def test_known_and_unknown_names(self):
        self.assertIs(scores.get("linear"), scores.linear)
        self.assertIs(scores.get("two_layer"), scores.two_layer)
        self.assertIs(scores.get_init("two_layer"), scores.init_two_layer)
        with self.assertRaisesRegex(ValueError, r"^unknown model 'cnn'; valid: linear, two_layer$"):
            scores.get("cnn")
        with self.assertRaisesRegex(ValueError, "valid: linear, two_layer"):
            scores.get_init("mlp")


if __name__ == "__main__":
    absltest.main()
