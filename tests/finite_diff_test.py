"""Tests for lib/finite_diff.py: centered differences in float64, chunking, input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import finite_diff, gradcheck


def _np(tree):
    return jax.tree.map(np.asarray, tree)


class NumericalGradTest(parameterized.TestCase):
    def test_quadratic(self):
        rng = np.random.default_rng(0)
        m = rng.normal(size=(6, 6))
        a, c = m @ m.T + np.eye(6), rng.normal(size=6)
        x = rng.normal(size=6)
        f = lambda p: 0.5 * p @ (a @ p) + c @ p
        num = finite_diff.numerical_grad(f, x)
        self.assertEqual(num.dtype, jnp.float64)
        self.assertLess(float(gradcheck.relative_error(num, a @ x + c)), 1e-8)

    def test_sin_exp_pytree(self):
        rng = np.random.default_rng(1)
        params = {"a": rng.normal(size=(3, 2)), "b": {"c": rng.normal(size=4)}}
        f = lambda p: jnp.sum(jnp.sin(p["a"])) + 2.0 * jnp.sum(jnp.exp(p["b"]["c"]))
        expected = {"a": np.cos(params["a"]), "b": {"c": 2.0 * np.exp(params["b"]["c"])}}
        num = finite_diff.numerical_grad(f, params)
        chex.assert_trees_all_equal_shapes(num, expected)
        self.assertLess(float(gradcheck.relative_error(num, expected)), 1e-8)

    def test_float32_params_are_checked_in_float64(self):
        x = np.linspace(-1.0, 1.0, 4).astype(np.float32)  # no zero: d(p^3) = 0 there
        num = finite_diff.numerical_grad(lambda p: jnp.sum(p**3), x)
        self.assertEqual(num.dtype, jnp.float64)
        self.assertLess(float(gradcheck.relative_error(num, 3.0 * x.astype(np.float64) ** 2)), 1e-8)

    def test_chunked_equals_unchunked(self):
        rng = np.random.default_rng(2)
        params = {"w": rng.normal(size=(5, 7)), "v": rng.normal(size=3)}
        f = lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2) * jnp.sum(p["v"] ** 3)
        whole = finite_diff.numerical_grad(f, params, chunk_size=1000)
        for chunk in (1, 4, 38):  # 38 = all coordinates
            chex.assert_trees_all_close(
                _np(finite_diff.numerical_grad(f, params, chunk_size=chunk)),
                _np(whole),
                rtol=1e-12,
                atol=0,
            )

    @parameterized.parameters(0.0, -1e-5, float("nan"), float("inf"))
    def test_bad_h(self, h):
        with self.assertRaisesRegex(ValueError, "h must be positive"):
            finite_diff.numerical_grad(lambda p: jnp.sum(p), np.ones(2), h=h)

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, "scalar"):
            finite_diff.numerical_grad(lambda p: p**2, np.ones(3))
        with self.assertRaisesRegex(TypeError, "floating-point"):
            finite_diff.numerical_grad(lambda p: jnp.sum(p), np.ones(3, np.int32))
        with self.assertRaisesRegex(ValueError, "chunk_size"):
            finite_diff.numerical_grad(lambda p: jnp.sum(p), np.ones(3), chunk_size=0)
        with self.assertRaisesRegex(ValueError, "indices"):
            finite_diff.finite_differences(lambda p: jnp.sum(p), np.ones(3), np.array([3]))


if __name__ == "__main__":
    absltest.main()
