"""Tests for lib/sharding.py: a vmapped, sharded batch of trials equals the trials run one
at a time (with their own minibatch order or a shared one); divergence stays in its lane;
4 forced CPU devices equal 1 device."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from lib import data, settings, sharding, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER_SEED = 11


def _dataset():
    return data.load("digits", seed=0, scale=1.0 / 16.0)


def _setup(ds):
    return settings.Setup(
        ds.num_features,
        ds.num_classes,
        optimizer="momentum",
        num_epochs=2,
        batch_size=100,
        train_eval_size=200,
    )


class TrialBatchTest(absltest.TestCase):
    """One vmapped program per batch; lanes match single runs; divergence stays in its lane."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ds = _dataset()
        cls.setup = _setup(cls.ds)
        cls.data = train.to_device(cls.ds)
        cls.rows = [
            {"learning_rate": 0.05, "reg": 1e-3},
            {"learning_rate": 0.2, "reg": 1e-4},
            {"learning_rate": 0.01, "reg": 1e-2, "mu": 0.5},
        ]
        cls.seeds = [3, 4, 5]
        cls.batch = sharding.fit_trials(cls.seeds, cls.rows, cls.data, cls.setup, pad_to=4)
        cls.shared = sharding.fit_trials(
            cls.seeds, cls.rows, cls.data, cls.setup, pad_to=4, order_seed=ORDER_SEED
        )

    def _check_lanes_equal_single_runs(self, batch, order_seed):
        state, history = batch
        chex.assert_shape(history["val_accuracy"], (3, 2))
        single = jax.jit(train.fit, static_argnums=3)
        for i, (seed, row) in enumerate(zip(self.seeds, self.rows)):
            args = (
                jax.random.key(seed),
                {k: np.float32(v) for k, v in row.items()},
                self.data,
                self.setup,
            )
            if order_seed is not None:
                args += (jax.random.key(order_seed),)
            s, h = single(*args)
            chex.assert_trees_all_close(
                sharding.trial_params(state, i), s.params, rtol=2e-5, atol=2e-6
            )
            chex.assert_trees_all_close(
                {k: v[i] for k, v in history.items()}, h, rtol=2e-5, atol=2e-6
            )
        self.assertFalse(np.any(sharding.diverged(history)))

    def test_vmapped_batch_equals_trials_one_at_a_time(self):
        self._check_lanes_equal_single_runs(self.batch, None)

    def test_shared_order_lane_equals_fit_with_that_order_key(self):
        self._check_lanes_equal_single_runs(self.shared, ORDER_SEED)
        # The shared order is a different minibatch order from each trial's own.
        self.assertFalse(np.allclose(self.shared[0].params["W"], self.batch[0].params["W"]))

    def _check_divergence_isolated(self, order_seed, reference):
        rows = self.rows[:1] + [{"learning_rate": 1e7, "reg": 1e-3}] + self.rows[1:]
        seeds = self.seeds[:1] + [9] + self.seeds[1:]
        state, history = sharding.fit_trials(
            seeds, rows, self.data, self.setup, pad_to=4, order_seed=order_seed
        )
        np.testing.assert_array_equal(sharding.diverged(history), [False, True, False, False])
        keep = np.array([0, 2, 3])
        chex.assert_tree_all_finite(jax.tree.map(lambda a: a[keep], state.params))
        chex.assert_trees_all_close(
            jax.tree.map(lambda a: a[keep], (state.params, history)),
            (reference[0].params, reference[1]),
            rtol=1e-5,
            atol=1e-6,
        )

    def test_diverging_trial_is_marked_and_leaves_the_others_unchanged(self):
        self._check_divergence_isolated(None, self.batch)

    def test_diverging_trial_under_a_shared_order_leaves_the_others_unchanged(self):
        self._check_divergence_isolated(ORDER_SEED, self.shared)


class ShardingTest(absltest.TestCase):
    def test_padded_size(self):
        self.assertEqual([sharding.padded_size(n, 4) for n in (1, 4, 5, 8)], [4, 4, 8, 8])
        with self.assertRaisesRegex(ValueError, "num_trials >= 1"):
            sharding.padded_size(0, 4)

    @pytest.mark.slow
    def test_four_forced_cpu_devices_equal_one_device(self):
        script = (
            "import json, jax, numpy as np\n"
            "from lib import data, settings, sharding, train\n"
            "assert jax.device_count() == 4, jax.devices()\n"
            "ds = data.load('digits', seed=0, scale=1/16)\n"
            "setup = settings.Setup(ds.num_features, ds.num_classes, optimizer='momentum',"
            " num_epochs=2, batch_size=100, train_eval_size=200)\n"
            "mesh = sharding.trial_mesh()\n"
            "rows = [{'learning_rate': 0.01 * 2 ** i, 'reg': 1e-4} for i in range(6)]\n"
            "d = train.to_device(ds, mesh)\n"
            "out = {'devices': mesh.size}\n"
            f"for name, order in (('own', None), ('shared', {ORDER_SEED})):\n"
            "    state, hist = sharding.fit_trials(list(range(6)), rows, d, setup, mesh,"
            " order_seed=order)\n"
            "    out[name] = {'W': np.asarray(state.params['W']).tolist(),"
            " 'val': np.asarray(hist['val_accuracy']).tolist()}\n"
            "print(json.dumps(out))\n"
        )
        env = {
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "JAX_PLATFORMS": "cpu",
        }
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sharded = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(sharded["devices"], 4)
        ds = _dataset()
        rows = [{"learning_rate": 0.01 * 2**i, "reg": 1e-4} for i in range(6)]
        for name, order in (("own", None), ("shared", ORDER_SEED)):
            state, hist = sharding.fit_trials(
                list(range(6)),
                rows,
                train.to_device(ds),
                _setup(ds),
                sharding.trial_mesh(jax.devices()[:1]),
                pad_to=8,
                order_seed=order,
            )
            np.testing.assert_allclose(
                sharded[name]["W"], state.params["W"], rtol=1e-5, atol=1e-6, err_msg=name
            )
            np.testing.assert_allclose(
                sharded[name]["val"], hist["val_accuracy"], atol=1e-6, err_msg=name
            )


if __name__ == "__main__":
    absltest.main()
