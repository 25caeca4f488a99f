"""Tests for experiments/benchmarks/numpy_trainer.py and experiments/bench.py.

Correctness only: no timing.
"""

import functools
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from experiments import benchmarks
from experiments.benchmarks import numpy_trainer, timing
from lib import settings, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D, K, B = 60, 12, 4, 20


def _softmax_loss_naive(W, b, X, y, reg):
    """The course's softmax_loss_naive, W (D, K): explicit loops over examples and classes."""
    loss, dW, db = 0.0, np.zeros_like(W), np.zeros_like(b)
    for i in range(X.shape[0]):
        s = [sum(X[i, d] * W[d, j] for d in range(X.shape[1])) + b[j] for j in range(W.shape[1])]
        shift = max(s)
        z = sum(np.exp(v - shift) for v in s)
        loss += -(s[y[i]] - shift) + np.log(z)
        for j in range(W.shape[1]):
            p = np.exp(s[j] - shift) / z - (j == y[i])
            dW[:, j] += p * X[i]
            db[j] += p
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W, db / n


def _svm_loss_naive(W, b, X, y, reg, margin=1.0):
    """The course's svm_loss_naive, W (D, K)."""
    loss, dW, db = 0.0, np.zeros_like(W), np.zeros_like(b)
    for i in range(X.shape[0]):
        s = X[i].dot(W) + b
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            m = s[j] - s[y[i]] + margin
            if m > 0:
                loss += m
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
                db[j] += 1
                db[y[i]] -= 1
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W, db / n


def _data(seed=0, n=N, d=D, k=K):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n).astype(np.int32))


class NumpyLossTest(parameterized.TestCase):
    @parameterized.product(loss=("softmax", "hinge"), layout=numpy_trainer.LAYOUTS)
    def test_matches_naive_loops(self, loss, layout):
        x, y = _data(1, n=7, d=5, k=3)
        x = x.astype(np.float64)
        rng = np.random.default_rng(2)
        w_dk, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
        naive = _softmax_loss_naive if loss == "softmax" else _svm_loss_naive
        want = naive(w_dk, b, x, y, 0.1)
        w = w_dk if layout == "DK" else w_dk.T
        value, dW, db = numpy_trainer.LOSS_FNS[loss](w, b, x, y, 0.1, layout)
        np.testing.assert_allclose(value, want[0], rtol=1e-12)
        np.testing.assert_allclose(dW if layout == "DK" else dW.T, want[1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(db, want[2], rtol=1e-10, atol=1e-12)

    def test_softmax_gradient_matches_finite_differences(self):
        x, y = _data(3, n=6, d=4, k=3)
        x = x.astype(np.float64)
        rng = np.random.default_rng(4)
        w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
        _, dW, db = numpy_trainer.softmax_loss_vectorized(w, b, x, y, 0.05)
        h = 1e-6
        for i, j in [(0, 0), (1, 2), (3, 1)]:
            wp, wm = w.copy(), w.copy()
            wp[i, j] += h
            wm[i, j] -= h
            fd = (
                numpy_trainer.softmax_loss_vectorized(wp, b, x, y, 0.05)[0]
                - numpy_trainer.softmax_loss_vectorized(wm, b, x, y, 0.05)[0]
            ) / (2 * h)
            self.assertAlmostEqual(fd, dW[i, j], delta=1e-7)
        bp, bm = b.copy(), b.copy()
        bp[1] += h
        bm[1] -= h
        fd = (
            numpy_trainer.softmax_loss_vectorized(w, bp, x, y, 0.05)[0]
            - numpy_trainer.softmax_loss_vectorized(w, bm, x, y, 0.05)[0]
        ) / (2 * h)
        self.assertAlmostEqual(fd, db[1], delta=1e-7)

    def test_two_layer_gradient_matches_finite_differences(self):
        x, y = _data(3, n=6, d=4, k=3)
        x = x.astype(np.float64)
        rng = np.random.default_rng(4)
        p = {"W1": rng.standard_normal((4, 5)), "b1": rng.standard_normal(5)}
        p |= {"W2": rng.standard_normal((5, 3)), "b2": rng.standard_normal(3)}
        _, grads = numpy_trainer.two_layer_loss(p, x, y, 0.05)
        h = 1e-6
        for name, idx in [
            ("W1", (0, 0)),
            ("W1", (3, 4)),
            ("b1", (2,)),
            ("W2", (1, 2)),
            ("b2", (0,)),
        ]:
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (
                numpy_trainer.two_layer_loss(plus, x, y, 0.05)[0]
                - numpy_trainer.two_layer_loss(minus, x, y, 0.05)[0]
            ) / (2 * h)
            self.assertAlmostEqual(fd, grads[name][idx], delta=1e-6, msg=f"{name}{idx}")

    def test_momentum_step_by_hand(self):
        # One step from W = 0, b = 0, v = 0 with reg 0: the loss is log K and
        # v = -lr * grad, W = v (the notes' v = mu v - lr dx; x += v).
        x, y = _data(5, n=4, d=3, k=2)
        model = numpy_trainer.init(np.zeros((2, 3)), np.zeros(2), "KD")
        loss = numpy_trainer.train_epoch(model, x, y, np.arange(4)[None], 0.5, 0.0, 0.9)
        self.assertAlmostEqual(loss, np.log(2.0), places=6)
        _, dW, db = numpy_trainer.softmax_loss_vectorized(
            np.zeros((2, 3), np.float32), np.zeros(2, np.float32), x, y, 0.0, "KD"
        )
        np.testing.assert_allclose(model.W, -0.5 * dW, rtol=1e-6)
        np.testing.assert_allclose(model.vb, -0.5 * db, rtol=1e-6)

    def test_bad_layout_and_loss(self):
        with self.assertRaisesRegex(ValueError, "unknown layout 'XY'; valid: DK, KD"):
            numpy_trainer.init(np.zeros((2, 3)), np.zeros(2), "XY")
        model = numpy_trainer.init(np.zeros((2, 3)), np.zeros(2))
        with self.assertRaisesRegex(ValueError, "unknown loss 'l1'"):
            numpy_trainer.train_epoch(
                model, *_data(n=4, d=3, k=2), np.arange(4)[None], 0.1, 0.0, loss="l1"
            )


class SameComputationTest(parameterized.TestCase):
    """The numpy trainer and scorelab's jitted epoch agree after 2 epochs on the same batches."""

    @parameterized.product(loss=("softmax", "hinge"), layout=numpy_trainer.LAYOUTS)
    def test_two_epochs_agree(self, loss, layout):
        x, y = _data()
        setup = settings.Setup(D, K, loss=loss, optimizer="momentum", batch_size=B, num_epochs=2)
        hp = settings.float32_hparams({"learning_rate": 0.05, "reg": 1e-2, "mu": 0.9})
        epoch = _jitted_epoch(setup)
        state = train.init_state(jax.random.key(7), hp, setup, N)
        model = numpy_trainer.init(
            np.asarray(state.params["W"]), np.asarray(state.params["b"]), layout
        )
        batches = [timing.epoch_batches(state, N, setup, e) for e in range(2)]
        self.assertFalse(np.array_equal(batches[0], batches[1]))  # reshuffled every epoch
        for b in batches:
            state, m = epoch(state, hp, jnp.asarray(x), jnp.asarray(y))
            np_loss = numpy_trainer.train_epoch(model, x, y, b, 0.05, 1e-2, 0.9, loss=loss)
            self.assertAlmostEqual(float(m["train_loss"]), np_loss, delta=1e-5 * abs(np_loss))
        chex.assert_trees_all_close(
            {"W": numpy_trainer.weights_kd(model), "b": model.b},
            jax.device_get(state.params),
            rtol=1e-5,
            atol=1e-6,
        )

    def test_two_layer_two_epochs_agree(self):
        x, y = _data()
        setup = settings.Setup(
            D, K, model="two_layer", hidden=6, optimizer="momentum", batch_size=B, num_epochs=2
        )
        hp = settings.float32_hparams({"learning_rate": 0.05, "reg": 1e-2, "mu": 0.9})
        epoch = _jitted_epoch(setup)
        state = train.init_state(jax.random.key(7), hp, setup, N)
        net = numpy_trainer.init_two_layer(jax.device_get(state.params))
        for e in range(2):
            b = timing.epoch_batches(state, N, setup, e)
            state, m = epoch(state, hp, jnp.asarray(x), jnp.asarray(y))
            np_loss = numpy_trainer.train_epoch_two_layer(net, x, y, b, 0.05, 1e-2, 0.9)
            self.assertAlmostEqual(float(m["train_loss"]), np_loss, delta=1e-5 * abs(np_loss))
        got = {k: v.T if k.startswith("W") else v for k, v in net.params.items()}
        chex.assert_trees_all_close(got, jax.device_get(state.params), rtol=1e-5, atol=1e-6)


@functools.cache
def _jitted_epoch(setup):
    return jax.jit(functools.partial(train.train_epoch, setup=setup))


class HelpersTest(absltest.TestCase):
    def test_interleaved_warms_up_then_alternates(self):
        calls = []
        warm, cold = timing.interleaved(
            {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3
        )
        # 1 warm-up round, then 3 rounds of a cold (first) and a warm (second) call each.
        self.assertEqual(calls, ["a", "b"] + ["a", "a", "b", "b"] * 3)
        self.assertEqual({k: len(v) for k, v in warm.items()}, {"a": 3, "b": 3})
        self.assertEqual({k: len(v) for k, v in cold.items()}, {"a": 3, "b": 3})

    def test_medians_take_fastest_numpy_as_baseline(self):
        got = timing.medians(
            {
                "scorelab": [3.0, 1.0, 2.0],
                "numpy_dk": [5.0, 4.0, 6.0],
                "numpy_kd_1thread": [3.0, 3.5, 9.0],
            }
        )
        self.assertEqual(
            got, {"scorelab": 2.0, "numpy_dk": 5.0, "numpy_kd_1thread": 3.5, "numpy": 3.5}
        )

    def test_profile_ops_names_the_xla_ops(self):
        """The trace of a jitted sort and product shows both ops, once per call."""
        f = jax.jit(lambda x: jnp.sort(x) @ jnp.sort(x, axis=0))
        x = jax.random.normal(jax.random.key(0), (256, 256))
        rows = timing.profile_ops(lambda: jax.block_until_ready(f(x)), calls=2)
        self.assertTrue(rows)
        ops = {row["op"]: row for row in rows}
        self.assertTrue(any(op.startswith("sort") for op in ops), list(ops))
        self.assertTrue(any("dot" in op or "fusion" in op for op in ops), list(ops))
        for row in rows:
            self.assertGreater(row["ms"], 0)
            self.assertGreaterEqual(row["count"], 1)
        self.assertEqual(rows, sorted(rows, key=lambda r: -r["ms"]))

    def test_unknown_workload(self):
        with self.assertRaisesRegex(ValueError, "unknown workload 'fast'; valid: train, sweep"):
            benchmarks.run("fast", 1)


TINY = [
    "--num_train=400",
    "--num_features=32",
    "--num_classes=4",
    "--hidden=8",
    "--batch_size=50",
    "--sweep_train=200",
    "--sweep_configs=3",
    "--sweep_epochs=2",
    "--num_val=50",
    "--members=3",
    "--ensemble_n=100",
    "--repeats=1",
]


@pytest.mark.slow
class EndToEndTest(parameterized.TestCase):
    def _bench(self, workload, *flags):
        """Runs the bench on the TINY shapes; returns (stdout, the JSON result of its last line)."""
        out = subprocess.run(
            [sys.executable, "-m", "experiments.bench", f"--workload={workload}", "--json"]
            + [*flags, *TINY],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        return out.stdout, json.loads(out.stdout.strip().splitlines()[-1])

    @parameterized.parameters("train", "two_layer", "sweep", "ensemble", "gradcheck")
    def test_json_line(self, workload):
        # train also runs with --profile (one process for both: each costs ~10 s).
        stdout, result = self._bench(workload, *["--profile"] * (workload == "train"))
        self.assertEqual(result["workload"], workload)
        self.assertIn("cpu", result["device"])
        self.assertIn("scorelab", result["seconds"])
        self.assertIn("scorelab", result["compile_seconds"])
        self.assertTrue(all(s > 0 for s in result["seconds"].values()), result["seconds"])
        self.assertEqual(set(result["cold_seconds"]), set(result["seconds"]))
        if workload != "train":
            self.assertNotIn("profile", result)  # only with --profile
        if workload == "train":
            self.assertIn("by XLA op", stdout)
            profile = result["profile"]
            self.assertTrue(profile)
            self.assertEqual(set(profile[0]), {"op", "ms", "count"})
            self.assertEqual(result["shapes"]["steps_per_epoch"], 8)
            check = result["loss_after_2_epochs"]
            for name in ("numpy_dk", "numpy_kd"):
                self.assertAlmostEqual(check[name], check["scorelab"], delta=1e-5)
                self.assertLess(check[f"max_abs_dW_{name}"], 1e-5)
            self.assertEqual(
                set(result["seconds"]),
                {
                    "scorelab",
                    "scorelab_train_epoch",
                    "scorelab_float32_rows",
                    "scorelab_one_block",
                    "numpy",
                    "numpy_dk",
                    "numpy_kd",
                    "numpy_dk_1thread",
                    "numpy_kd_1thread",
                },
            )
        if workload == "sweep":
            self.assertEqual(set(result["compile_seconds"]), {"scorelab", "scorelab_own_order"})
            # 3 configs x 2 epochs; per epoch 4 steps of a forward and a dW product (2 x 50
            # rows each) and the accuracies' forward passes (200 train + 50 val rows).
            flop = 2 * 32 * 4 * 3 * 2 * (4 * 2 * 50 + 250)
            self.assertAlmostEqual(result["products_gflop"], flop / 1e9)
            self.assertIn("matmul_2048", result["seconds"])
            self.assertAlmostEqual(
                result["floor_seconds"], flop / (result["peak_gflops"] * 1e9), places=12
            )
        if workload == "ensemble":
            self.assertLess(result["max_abs_error"], 1e-5)
            self.assertLessEqual(
                {"scorelab", "scorelab_vmap", "scorelab_wide", "wide_matmul"},
                set(result["seconds"]),
            )
        if workload == "gradcheck":
            self.assertEqual(result["shapes"]["num_params"], 650)
            self.assertEqual(set(result["grades"].values()), {"good"})


if __name__ == "__main__":
    absltest.main()
