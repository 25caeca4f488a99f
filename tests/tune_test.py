"""experiments.tune end to end on digits (lib/tune.py, lib/tune_report.py): the outputs, the
members equal to the search's own trained params, resuming after kill -9 anywhere."""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from absl.testing import absltest, parameterized

from configs import tune as tune_config
from lib import metrics, model, search, sharding, sweep_stage, train, tune
from lib.space import Dim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = "12x1,8x3"  # 12 one-epoch trials, 8 of 3 epochs; then 3 replicas of the best
SIZE = 4
TRIALS = 12 + 8 + (SIZE - 1)


def small_config(sampler="random"):
    c = tune_config.get_config()
    c.search.stages = STAGES
    c.search.sampler = sampler
    c.search.trials_per_batch = 4
    c.search.tpe_startup = 4
    c.ensemble.size = SIZE
    return c


def read_trials(workdir):
    with open(os.path.join(workdir, "trials.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {(r["stage"], r["slot"]): r for r in rows}


# Runs the tune of ``small_config`` and kills itself (SIGKILL) as the study is told of its
# n-th trial: trials of the batch before it are told, the rest are not.
_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from lib import sweep_stage, tune
    from tests.tune_test import small_config
    told, original = [0], sweep_stage._tell
    def tell(*args):
        told[0] += 1
        if told[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args)
    sweep_stage._tell = tell
    tune.run_tune(small_config(), sys.argv[1])
    """
)


@pytest.mark.slow
class TuneTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="tune_test_")
        cls.workdir = os.path.join(cls.root, "whole")
        cls.summary = tune.run_tune(small_config(), cls.workdir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def test_outputs(self):
        s, w = self.summary, self.workdir
        for name in ("summary.json", "report.md", "best_hparams.json", "trials.csv", "search.png"):
            self.assertTrue(os.path.exists(os.path.join(w, name)), name)
        for name in ("curves.png", "templates.png", "ensemble.png"):
            self.assertTrue(os.path.exists(os.path.join(w, name)), name)
        self.assertEqual(metrics.read_json(os.path.join(w, "summary.json")), metrics.to_json(s))
        self.assertEqual(s["config_epochs"], 12 * 1 + 8 * 3 + 3 * 3)
        self.assertEqual([st["config_epochs"] for st in s["stages"]], [12, 24, 9])
        self.assertEqual(s["num_trials"], TRIALS)
        self.assertIn(s["best"]["stage"], (1, 2))
        for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
            self.assertGreater(s["best"][key], 0.8)
        self.assertEqual(set(s["space_notes"]), {"learning_rate", "reg"})
        self.assertEqual(s["preprocess"], "center")
        with open(os.path.join(w, "report.md")) as f:
            report = f.read()
        self.assertIn(f"{s['ensemble']['test_accuracy']:.4f}", report)
        self.assertIn("lambda_max", report)
        self.assertIn(metrics.read_json(os.path.join(w, "best_hparams.json"))["flags"], report)

    def test_members_are_the_best_trial_and_its_replicas(self):
        """The ensemble's members are the last search stage's best trial of trials.csv and
        its replicas (its hyperparameters, other seeds), as the summary names them, each
        with its model, epochs and origin."""
        trials = read_trials(self.workdir)
        rank = lambda r: (-float(r["val_accuracy"]), r["stage"], int(r["slot"]))
        searched = min((r for (st, _), r in trials.items() if st == "1"), key=rank)
        replicas = [r for (st, _), r in trials.items() if st == "2"]
        self.assertLen(replicas, SIZE - 1)
        want = sorted([searched, *replicas], key=rank)
        ens = self.summary["ensemble"]
        self.assertEqual(
            [(o["stage"], o["slot"]) for o in ens["origin"]],
            [(int(r["stage"]), int(r["slot"])) for r in want],
        )
        self.assertEqual(
            [m["name"] for m in ens["members"]],
            [f"trial {r['trial']} (stage {r['stage']})" for r in want],
        )
        for o, r, m in zip(ens["origin"], want, ens["members"]):
            self.assertEqual((o["num_epochs"], o["model"]), (3, "linear"))
            self.assertEqual(o["hparams"], self.summary["ensemble"]["origin"][0]["hparams"])
            self.assertAlmostEqual(m["val_accuracy"], float(r["val_accuracy"]), places=6)
            self.assertEqual(r["order_seed"], "")  # each member drew its own minibatch order
        self.assertLen({r["seed"] for r in want}, SIZE)  # each its own initialisation
        self.assertAlmostEqual(
            ens["gain_over_best"]["test_accuracy"],
            ens["test_accuracy"] - ens["best_member"]["test_accuracy"],
        )

    def test_members_equal_the_search_own_trained_params(self):
        """What members/ holds is what training each trial gives (its seed, hparams and own
        order), and the ensemble is computed from exactly those params."""
        sweep = search.read_sweep(small_config(), tune.defaults(SIZE))
        origin = self.summary["ensemble"]["origin"]
        setup = sweep_stage.setup_for(sweep.setup, origin[0]["hparams"], 3)
        trials = read_trials(self.workdir)
        seeds = [int(trials[(str(o["stage"]), str(o["slot"]))]["seed"]) for o in origin]
        rows = [sweep_stage.trial_hparams(sweep.hparams, o["hparams"]) for o in origin]
        state, _ = sharding.fit_trials(seeds, rows, train.to_device(sweep.dataset), setup)
        for i, o in enumerate(origin):
            kept = tune.read_member(self.workdir, o["stage"], o["slot"])
            params, history = kept["params"], kept["history"]
            self.assertEqual(kept["ema"], {})  # the config keeps no running average
            for name in ("W", "b"):
                np.testing.assert_allclose(params[name], state.params[name][i], atol=1e-5)
            acc = model.accuracy(params, sweep.dataset.x_test, sweep.dataset.y_test, setup)
            self.assertAlmostEqual(
                float(acc), self.summary["ensemble"]["members"][i]["test_accuracy"], places=6
            )
            self.assertEqual(len(history["val_accuracy"]), 3)

    def test_a_finished_tune_reruns_nothing(self):
        again = os.path.join(self.root, "again")
        shutil.copytree(self.workdir, again)
        summary = tune.run_tune(small_config(), again)
        self.assertEqual(summary["trials_run"], 0)
        self.assertEqual(summary["ensemble"]["members"], self.summary["ensemble"]["members"])

    @parameterized.named_parameters(
        ("in_the_first_stage", 2), ("after_members_were_kept", 14), ("in_the_replicas", 22)
    )
    def test_resume_after_kill_9_equals_an_uninterrupted_run(self, told):
        workdir = os.path.join(self.root, f"killed_{told}")
        script = _KILLED.format(root=ROOT)
        proc = subprocess.run(
            [sys.executable, "-c", script, workdir, str(told)],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(proc.returncode, -9, proc.stderr[-2000:])
        summary = tune.run_tune(small_config(), workdir)
        self.assertEqual(summary["trials_run"], TRIALS - (told - 1))  # nothing told runs again
        whole, resumed = read_trials(self.workdir), read_trials(workdir)
        self.assertEqual(whole.keys(), resumed.keys())
        for key, row in whole.items():
            for col in ("status", "seed", "learning_rate", "reg", "val_accuracy"):
                self.assertEqual(resumed[key][col], row[col], (key, col))
        self.assertEqual(summary["best"]["hparams"], self.summary["best"]["hparams"])

        # A trial run again after the kill gets a new number in its stage: compare by slot.
        def members(s):
            e = s["ensemble"]
            return [
                ((o["stage"], o["slot"]), m["val_accuracy"], m["test_accuracy"])
                for o, m in zip(e["origin"], e["members"])
            ]

        self.assertEqual(members(summary), members(self.summary))
        self.assertEqual(
            summary["ensemble"]["test_accuracy"], self.summary["ensemble"]["test_accuracy"]
        )


class DefaultRangeTest(absltest.TestCase):
    def test_a_default_range_extends_past_the_border_its_best_touch(self):
        """A default learning-rate range far too low: the next stage's range reaches past
        its high border (and says so) instead of only warning; a configured one would not."""
        low = {"learning_rate": Dim(1e-5, 1e-4, "log"), "reg": Dim(1e-6, 1e-5, "log")}

        def plan(configured, stages, dataset, setup, hparams):
            return {**low, **configured}, stages, tuple(n for n in low if n not in configured)

        c = small_config()
        c.search.stages = "8x1,4x1"
        c.search.trials_per_batch = 8
        workdir = os.path.join(tempfile.mkdtemp(prefix="tune_test_"), "w")
        sweep = search.read_sweep(c, search.Defaults(plan=plan))
        summary, _ = search.run_sweep(sweep, workdir)
        first, second = summary["stages"]
        side, bound = first["extended"]["learning_rate"]
        self.assertEqual(side, "high")
        self.assertAlmostEqual(np.log10(bound), -3.5, 6)  # half the range's width past it
        self.assertEqual(second["space"]["learning_rate"]["high"], bound)
        self.assertFalse([w for w in first["border_warnings"] if "learning_rate" in w])
        # The same range configured: kept as given, with the border warning.
        c.search.space = {"learning_rate": {"low": 1e-5, "high": 1e-4, "scale": "log"}}
        sweep = search.read_sweep(c, search.Defaults(plan=plan))
        summary, _ = search.run_sweep(sweep, workdir + "_configured")
        first, second = summary["stages"]
        self.assertNotIn("learning_rate", first["extended"])
        self.assertEqual(second["space"]["learning_rate"]["high"], 1e-4)
        self.assertTrue([w for w in first["border_warnings"] if "learning_rate" in w])


class TuneConfigTest(absltest.TestCase):
    def test_any_training_config_gets_the_blocks_and_keeps_its_own(self):
        from configs import cifar10_two_layer, cifar10_two_layer_sweep

        c = tune_config.add_blocks(cifar10_two_layer.get_config())
        self.assertEqual((c.search.stages, dict(c.search.space)), ("", {}))
        self.assertEqual(c.ensemble.size, 8)
        mine = tune_config.add_blocks(cifar10_two_layer_sweep.get_config())
        self.assertEqual(mine.search.stages, "160x1,32x4,16x15")

    def test_an_empty_ensemble_is_refused(self):
        c = small_config()
        c.ensemble.size = 0
        with self.assertRaisesRegex(ValueError, "ensemble.size=0 must be >= 1"):
            tune.run_tune(c, os.path.join(tempfile.mkdtemp(), "w"))


if __name__ == "__main__":
    absltest.main()
