"""Tests for lib/search.py and lib/sharding.py: vmapped trials, divergence isolation,
resume, TPE, outputs, sharding, bad input (lib/space.py has its own tests)."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest, parameterized
import chex
import jax
import numpy as np

from configs import digits_sweep
from lib import data, search, sharding, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dataset():
    return data.load("digits", seed=0, scale=1.0 / 16.0)


def _setup(ds, **kw):
    return train.Setup(
        ds.num_features,
        ds.num_classes,
        optimizer="momentum",
        num_epochs=2,
        batch_size=100,
        train_eval_size=200,
        **kw,
    )


def _sweep_config(**search):
    c = digits_sweep.get_config()
    c.train.batch_size = 100
    c.train.train_eval_size = 200
    c.search.stages = "8x1,4x2"
    c.search.trials_per_batch = 4
    for k, v in search.items():
        c.search[k] = v
    return c


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

    def test_vmapped_batch_equals_trials_one_at_a_time(self):
        state, history = self.batch
        chex.assert_shape(history["val_accuracy"], (3, 2))
        single = jax.jit(train.fit, static_argnums=3)
        for i, (seed, row) in enumerate(zip(self.seeds, self.rows)):
            s, h = single(
                jax.random.key(seed),
                {k: np.float32(v) for k, v in row.items()},
                self.data,
                self.setup,
            )
            chex.assert_trees_all_close(
                sharding.trial_params(state, i), s.params, rtol=2e-5, atol=2e-6
            )
            chex.assert_trees_all_close(
                {k: v[i] for k, v in history.items()}, h, rtol=2e-5, atol=2e-6
            )
        self.assertFalse(np.any(sharding.diverged(history)))

    def test_diverging_trial_is_marked_and_leaves_the_others_unchanged(self):
        rows = self.rows[:1] + [{"learning_rate": 1e7, "reg": 1e-3}] + self.rows[1:]
        seeds = self.seeds[:1] + [9] + self.seeds[1:]
        state, history = sharding.fit_trials(seeds, rows, self.data, self.setup, pad_to=4)
        np.testing.assert_array_equal(sharding.diverged(history), [False, True, False, False])
        keep = [0, 2, 3]
        chex.assert_tree_all_finite(jax.tree.map(lambda a: a[np.array(keep)], state.params))
        chex.assert_trees_all_close(
            jax.tree.map(lambda a: a[np.array(keep)], (state.params, history)),
            (self.batch[0].params, self.batch[1]),
            rtol=1e-5,
            atol=1e-6,
        )


class RunSearchTest(absltest.TestCase):
    """End to end on digits: stages, resume after an interruption, TPE, outputs."""

    def test_resume_after_interruption_reruns_nothing_finished_and_loses_nothing(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config()
        config.search.space.learning_rate.low, config.search.space.learning_rate.high = 1e-5, 1e-3
        seen = []

        def interrupt(stage, results):
            seen.append((stage, results))
            if len(seen) == 2:
                raise KeyboardInterrupt("simulated kill in the middle of batch 2")

        with self.assertRaises(KeyboardInterrupt):
            search.run_search(config, workdir, callback=interrupt)
        first = {r["slot"]: r for r in seen[0][1]}
        lost = {r["slot"]: r for r in seen[1][1]}
        self.assertLen(first, 4)
        summary = search.run_search(config, workdir)
        self.assertEqual(summary["interrupted_trials"], 4)  # batch 2, left RUNNING
        self.assertEqual(summary["trials_run"], 4 + 4)  # batch 2 again, then stage 2
        self.assertEqual(summary["num_trials"], 12)
        with open(os.path.join(workdir, "trials.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()]
        header, rows = rows[0], rows[1:]
        col = {name: header.index(name) for name in header}
        self.assertLen(rows, 12)
        stage0 = {int(r[col["slot"]]): r for r in rows if r[col["stage"]] == "0"}
        self.assertEqual(sorted(stage0), list(range(8)))
        for slot, r in {**first, **lost}.items():  # kept (batch 1) or re-run identically (2)
            self.assertEqual(int(stage0[slot][col["seed"]]), r["seed"])
            self.assertAlmostEqual(
                float(stage0[slot][col["val_accuracy"]]), r["val_accuracy"], places=5
            )
        for slot in first:  # batch 1 kept its Optuna trial numbers: it was not re-run
            self.assertEqual(int(stage0[slot][col["trial"]]), slot)
        # The learning-rate range lies below the optimum: a border warning, high side.
        self.assertTrue(
            any("learning_rate" in w and "high border" in w for w in summary["border_warnings"]),
            summary["border_warnings"],
        )
        self.assertEqual(len(summary["stages"]), 2)
        self.assertLessEqual(
            summary["stages"][1]["space"]["reg"]["high"]
            / summary["stages"][1]["space"]["reg"]["low"],
            1e-1 / 1e-6,
        )
        for name in (
            "summary.json",
            "config.json",
            "search.png",
            "best_hparams.json",
            "study.journal",
        ):
            self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
        # A third run does nothing new and reports the same best, read from best_params/.
        again = search.run_search(config, workdir)
        self.assertEqual(again["trials_run"], 0)
        self.assertEqual(again["best"], summary["best"])
        self.assertAlmostEqual(again["test_accuracy"], summary["test_accuracy"], places=6)
        with open(os.path.join(workdir, "best_hparams.json")) as f:
            best = json.load(f)
        self.assertEqual(best["hparams"], summary["best"]["hparams"])
        self.assertIn("--config.optimizer.learning_rate=", best["flags"])
        # Appending a stage continues the study: only the new stage's trials run.
        config.search.stages = "8x1,4x2,4x2"
        longer = search.run_search(config, workdir)
        self.assertEqual((longer["trials_run"], longer["num_trials"]), (4, 16))
        # Changing a finished stage's epochs is refused before anything is written.
        with open(os.path.join(workdir, "config.json")) as f:
            before = f.read()
        config.search.stages = "8x2,4x2,4x2"
        with self.assertRaisesRegex(ValueError, "stage 0 of this study ran 1 epochs"):
            search.run_search(config, workdir)
        with open(os.path.join(workdir, "config.json")) as f:
            self.assertEqual(f.read(), before)

    def test_tpe_asks_a_whole_batch_and_tells_it_together(self):
        import optuna

        workdir = tempfile.mkdtemp()
        config = _sweep_config(sampler="tpe", stages="", num_trials=12)
        config.train.num_epochs = 1
        batches = []
        storage = search.open_storage(None, workdir)

        def record(stage, results):
            study = optuna.load_study(study_name="sweep.stage0", storage=storage)
            states = [t.state for t in study.get_trials(deepcopy=False)]
            batches.append((len(results), states.count(optuna.trial.TrialState.RUNNING)))

        summary = search.run_search(config, workdir, callback=record)
        # 12 trials in batches of 4, all 4 asked (RUNNING) before any result is told.
        self.assertEqual(batches, [(4, 4)] * 3)
        self.assertEqual(summary["num_trials"], 12)
        study = optuna.load_study(study_name="sweep.stage0", storage=storage)
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        self.assertLen(trials, 12)
        self.assertLen({t.params["learning_rate"] for t in trials}, 12)
        for t in trials:
            self.assertBetween(t.params["learning_rate"], 1e-4, 10.0)
            self.assertBetween(t.params["reg"], 1e-6, 1e-1)


class ShardingTest(absltest.TestCase):
    def test_padded_size(self):
        self.assertEqual([sharding.padded_size(n, 4) for n in (1, 4, 5, 8)], [4, 4, 8, 8])

    def test_four_forced_cpu_devices_equal_one_device(self):
        script = (
            "import json, jax, numpy as np\n"
            "from lib import data, sharding, train\n"
            "assert jax.device_count() == 4, jax.devices()\n"
            "ds = data.load('digits', seed=0, scale=1/16)\n"
            "setup = train.Setup(ds.num_features, ds.num_classes, optimizer='momentum',"
            " num_epochs=2, batch_size=100, train_eval_size=200)\n"
            "mesh = sharding.trial_mesh()\n"
            "rows = [{'learning_rate': 0.01 * 2 ** i, 'reg': 1e-4} for i in range(6)]\n"
            "state, hist = sharding.fit_trials(list(range(6)), rows,"
            " sharding.replicate(train.to_device(ds), mesh), setup, mesh)\n"
            "print(json.dumps({'devices': mesh.size, 'W': np.asarray(state.params['W']).tolist(),"
            " 'val': np.asarray(hist['val_accuracy']).tolist()}))\n"
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
        state, hist = sharding.fit_trials(
            list(range(6)),
            rows,
            train.to_device(ds),
            _setup(ds),
            sharding.trial_mesh(jax.devices()[:1]),
            pad_to=8,
        )
        np.testing.assert_allclose(sharded["W"], state.params["W"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sharded["val"], hist["val_accuracy"], atol=1e-6)


class BadInputTest(parameterized.TestCase):
    @parameterized.named_parameters(
        (
            "unknown_name",
            {"learnin_rate": {"low": 1e-3, "high": 1.0}},
            "valid names: learning_rate",
        ),
        ("low_above_high", {"learning_rate": {"low": 1.0, "high": 1e-3}}, "below high"),
        ("log_nonpositive", {"reg": {"low": 0.0, "high": 1e-2, "scale": "log"}}, "low > 0"),
        ("bad_scale", {"reg": {"low": 1e-3, "high": 1e-2, "scale": "ln"}}, "log, linear"),
        ("optimizer_range", {"optimizer": {"low": 0.0, "high": 1.0}}, "needs choices"),
        ("unknown_optimizer", {"optimizer": {"choices": ["sgd", "adamw"]}}, "unknown optimizers"),
        ("mu_out_of_range", {"mu": {"low": 0.5, "high": 1.5, "scale": "linear"}}, "mu"),
        (
            "dropout_linear",
            {"dropout": {"low": 0.0, "high": 0.5, "scale": "linear"}},
            "model.name=two_layer",
        ),
        ("missing_high", {"reg": {"low": 1e-3}}, "both low and high"),
    )
    def test_bad_space_is_rejected_and_the_workdir_untouched(self, space, message):
        workdir = tempfile.mkdtemp()
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write("{}")  # whatever is there must survive
        config = _sweep_config()
        config.search.space = space
        with self.assertRaisesRegex(ValueError, message):
            search.run_search(config, workdir)
        self.assertEqual(os.listdir(workdir), ["config.json"])
        with open(os.path.join(workdir, "config.json")) as f:
            self.assertEqual(f.read(), "{}")

    @parameterized.parameters(
        ("sampler", "bayes", "valid: random, grid, tpe"),
        ("stages", "64-1", "TRIALSxEPOCHS"),
        ("top_fraction", 0.0, "top_fraction"),
    )
    def test_bad_search_fields(self, field, value, message):
        config = _sweep_config(**{field: value})
        with self.assertRaisesRegex(ValueError, message):
            search.run_search(config, tempfile.mkdtemp())

    def test_num_epochs_in_space_conflicts_with_stages(self):
        config = _sweep_config()
        config.search.space.num_epochs = {"choices": [1, 2]}
        with self.assertRaisesRegex(ValueError, "conflicts with search.stages"):
            search.run_search(config, tempfile.mkdtemp())


if __name__ == "__main__":
    absltest.main()
