"""Tests for lib/search.py, lib/sweep_stage.py and lib/study.py: stages, resume, refusing to
drop finished work, shared studies, TPE, grid, all-diverged sweeps, outputs, bad input
(lib/space.py, lib/samplers.py, lib/narrowing.py and lib/sharding.py have their own tests)."""

import csv
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
import optuna
import pytest
from absl.testing import absltest, parameterized

from configs import digits_sweep
from lib import plots, samplers, search, sharding, space, study, sweep_stage


def _sweep_config(**search):
    c = digits_sweep.get_config()
    c.train.batch_size = 100
    c.train.train_eval_size = 200
    c.search.stages = "8x1,4x2"
    c.search.trials_per_batch = 4
    for k, v in search.items():
        c.search[k] = v
    return c


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
        # Stage 1's ranges are strictly narrower than stage 0's and hold stage 0's best.
        best0 = summary["stages"][0]["best"]["hparams"]
        for name in ("learning_rate", "reg"):
            old, new = (summary["stages"][i]["space"][name] for i in (0, 1))
            self.assertLess(new["high"] / new["low"], old["high"] / old["low"], name)
            self.assertBetween(best0[name], new["low"], new["high"])
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
        # Changing a finished stage's epochs, dropping a finished stage or asking fewer
        # trials than a stage finished is refused before anything is written.
        for stages, message in (
            ("8x2,4x2,4x2", "stage 0 of this study ran 1 epochs"),
            ("8x1,4x2", "holds stage 2 with 4 finished trials.*new --workdir"),
            ("8x1,2x2,4x2", "stage 1 of this study has 4 finished trials.*new --workdir"),
        ):
            config.search.stages = stages
            with self.assertRaisesRegex(ValueError, message):
                search.run_search(config, workdir)
            with open(os.path.join(workdir, "config.json")) as f:
                self.assertEqual(f.read(), before)
            with open(os.path.join(workdir, "trials.csv")) as f:
                self.assertLen(f.read().splitlines(), 17)

    def test_tpe_batches_after_warm_up_are_modelled_not_random(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config(sampler="tpe", stages="", num_trials=12, tpe_startup=4)
        config.train.num_epochs = 1
        batches = []
        storage = study.open_storage(None, workdir)

        def record(stage, results):
            st = optuna.load_study(study_name="sweep.stage0", storage=storage)
            states = [t.state for t in st.get_trials(deepcopy=False)]
            batches.append((len(results), states.count(optuna.trial.TrialState.RUNNING)))

        summary = search.run_search(config, workdir, callback=record)
        # 12 trials in batches of 4, all 4 claimed (RUNNING) before any result is told.
        self.assertEqual(batches, [(4, 4)] * 3)
        self.assertEqual(summary["num_trials"], 12)
        st = optuna.load_study(study_name="sweep.stage0", storage=storage)
        trials = sorted(
            st.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number
        )
        self.assertLen(trials, 12)
        # Every claim draws its own params: all slots of the random start-up were once
        # one draw (the proposal's seed counted the stage's trials, WAITING ones included).
        self.assertLen({tuple(sorted(t.params.items())) for t in trials}, 12)
        for t in trials:
            self.assertBetween(t.params["learning_rate"], 1e-4, 10.0)
            self.assertBetween(t.params["reg"], 1e-6, 1e-1)
        # The first batch is the random start-up (tpe_startup=4); every later batch is
        # modelled on the trials told before it.
        self.assertEqual([t.user_attrs["model"] for t in trials], ["random"] * 4 + ["stage 0"] * 8)
        self.assertEqual(summary["stages"][0]["model"], {"random": 4, "stage 0": 8})

    def test_tpe_models_every_stage_after_the_first(self):
        # Each stage of the old sweep was a new study whose TPE began with its own random
        # start-up: stages 1 and 2 got exactly RandomSampler(seed + stage)'s draws. Now
        # they model the earlier stage's trials from their first trial on.
        workdir = tempfile.mkdtemp()
        config = _sweep_config(sampler="tpe", stages="12x1,4x1,4x1", tpe_startup=8)
        config.search.top_fraction = 0.5
        summary = search.run_search(config, workdir)
        self.assertEqual(summary["num_trials"], 20)
        storage = study.open_storage(None, workdir)
        for stage in (1, 2):
            st = optuna.load_study(study_name=f"sweep.stage{stage}", storage=storage)
            trials = st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            self.assertEqual({t.user_attrs["model"] for t in trials}, {f"stage {stage - 1}"})
            self.assertEqual(summary["stages"][stage]["model"], {f"stage {stage - 1}": 4})
            dists = space.distributions(space.space_from_json(st.user_attrs["space"]))
            rand = optuna.create_study(sampler=optuna.samplers.RandomSampler(stage))
            draws = [rand.ask(dists).params for _ in range(4)]
            for t in trials:
                self.assertNotIn(t.params, draws)

    def test_a_sweep_that_learned_nothing_says_so(self):
        config = _sweep_config(stages="4x1")
        config.search.space.learning_rate.low, config.search.space.learning_rate.high = 1e-9, 1e-7
        with self.assertLogs("absl", "INFO") as logs:
            summary = search.run_search(config, tempfile.mkdtemp())
        (warning,) = [w for w in summary["border_warnings"] if "nothing learned" in w]
        self.assertIn("chance level 0.100", warning)
        self.assertIn("likely too low", warning)
        self.assertIn("--config.search.space.learning_rate.low=1e-07", warning)
        self.assertTrue(any("nothing learned" in line for line in logs.output))
        # Progress: trials done / planned, the best so far, elapsed time and an ETA.
        self.assertTrue(
            any(
                re.search(
                    r"stage 0 \(1 of 1\): 4/4 trials done .*best val acc 0\.\d+, \d+s elapsed, ETA 0s",
                    line,
                )
                for line in logs.output
            ),
            logs.output,
        )

    def test_grid_end_to_end(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config(sampler="grid", stages="4x1")
        summary = search.run_search(config, workdir)
        self.assertEqual((summary["num_trials"], summary["trials_run"]), (4, 4))
        with open(os.path.join(workdir, "trials.csv")) as f:
            lines = f.read().splitlines()
        col = lines[0].split(",").index("learning_rate")
        lrs = sorted({float(line.split(",")[col]) for line in lines[1:]})
        # 2 x 2 cell centres on the log scale of [1e-4, 10]: 10 ** (-4 + (i + 1/2) * 5 / 2).
        np.testing.assert_allclose(lrs, [10 ** (-4 + 1.25), 10 ** (-4 + 3.75)], rtol=1e-6)
        self.assertEqual(search.run_search(config, workdir)["trials_run"], 0)

    def test_all_diverged_writes_a_summary_without_best(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config()
        config.search.space.learning_rate.low, config.search.space.learning_rate.high = 1e3, 1e30
        summary = search.run_search(config, workdir)
        self.assertIsNone(summary["best"])
        self.assertIsNone(summary["test_accuracy"])
        self.assertEqual([st["best"] for st in summary["stages"]], [None, None])
        self.assertEqual([st["diverged"] for st in summary["stages"]], [8, 4])
        with open(os.path.join(workdir, "summary.json")) as f:
            self.assertIsNone(json.load(f)["best"])
        self.assertTrue(
            any(
                "all 8 trials diverged" in w and "too high" in w for w in summary["border_warnings"]
            ),
            summary["border_warnings"],
        )
        self.assertTrue(os.path.exists(os.path.join(workdir, "search.png")))
        self.assertFalse(os.path.exists(os.path.join(workdir, "best_hparams.json")))
        self.assertFalse(os.path.exists(os.path.join(workdir, "best_params")))

    def test_best_is_a_complete_trial_of_the_last_stage_that_has_one(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config()
        config.search.space.learning_rate.low, config.search.space.learning_rate.high = 1e-3, 1e-1
        real = sharding.diverged

        def stage1_diverges(history):  # stage 1 (2 epochs) is reported diverged throughout
            out = real(history)
            return np.ones_like(out) if history["train_loss"].shape[1] == 2 else out

        with mock.patch.object(sharding, "diverged", stage1_diverges):
            summary = search.run_search(config, workdir)
        self.assertEqual([st["diverged"] for st in summary["stages"]], [0, 4])
        self.assertEqual(summary["best"]["stage"], 0)
        self.assertEqual(summary["best"]["trial"], summary["stages"][0]["best"]["trial"])
        with open(os.path.join(workdir, "best_hparams.json")) as f:
            self.assertEqual(json.load(f)["trial"]["stage"], 0)

    def test_a_second_process_sharing_the_study_runs_no_slot_twice(self):
        workdir = tempfile.mkdtemp()
        config = _sweep_config()
        storage = study.open_storage(None, workdir)
        calls = []

        def other_process(stage, results):
            # While this run trains slots 0-3, "another process" finishes slots 4-7 of stage
            # 0 and a duplicate of slot 0.
            calls.append(stage)
            if len(calls) > 1:
                return
            st = optuna.load_study(study_name="sweep.stage0", storage=storage)
            dists = space.distributions(space.space_from_config(config.search.space))
            for slot in (4, 5, 6, 7, 0):
                t = st.ask(dists)
                t.set_user_attr("owner", "elsewhere:1:x")
                t.set_user_attr("slot", slot)
                result = {k: v for k, v in results[0].items() if k != "slot"}
                t.set_user_attr("result", {**result, "val_accuracy": 0.5})
                st.tell(t, 0.5)

        summary = search.run_search(config, workdir, callback=other_process)
        self.assertEqual(summary["trials_run"], 4 + 4)  # slots 0-3 of stage 0, then stage 1
        self.assertEqual(calls, [0, 1])
        with open(os.path.join(workdir, "trials.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()[1:]]
        self.assertLen(rows, 12)
        stage0 = [(int(r[2]), int(r[1])) for r in rows if r[0] == "0"]  # (slot, trial)
        self.assertEqual([slot for slot, _ in stage0], list(range(8)))
        self.assertEqual(stage0[0], (0, 0))  # the first complete trial of slot 0 is kept


def _objective(row):
    """A synthetic val accuracy peaked at learning_rate = 1e-2, reg = 1e-3 (log scales)."""
    d2 = (math.log10(row["learning_rate"]) + 2) ** 2 + (math.log10(row["reg"]) + 3) ** 2
    return math.exp(-d2 / 8)


def _fake_batch(items, stage, num_epochs, full, ctx):
    """sweep_stage._run_batch without training: each trial scores _objective."""
    return [
        {
            "trial": trial,
            "slot": slot,
            "params": None,
            "result": {
                "status": "complete",
                "seed": 0,
                "order_seed": 0,
                "num_epochs": num_epochs,
                "seconds": 0.0,
                "diverged_epoch": None,
                "train_accuracy": _objective(row),
                "val_accuracy": _objective(row),
                "val_accuracy_per_epoch": [_objective(row)],
            },
        }
        for trial, slot, row in items
    ]


class TpeAcrossStagesTest(absltest.TestCase):
    def test_later_stages_land_closer_to_the_optimum_than_random_search(self):
        # The same coarse-to-fine sweep (stages narrowed alike) with TPE and with random
        # search, on a cheap objective with a known optimum: TPE's later-stage trials, which
        # model the earlier stages, lie measurably closer to it, seed after seed. (The old
        # sweep's later stages were random start-ups: as far off as random search.)
        distances = {"tpe": [], "random": []}
        for seed in range(4):
            for sampler in distances:  # noqa: PLC0206 (appends to distances[sampler] below)
                workdir = tempfile.mkdtemp()
                config = _sweep_config(sampler=sampler, seed=seed, stages="24x1,8x1,8x1")
                config.search.top_fraction = 0.5
                config.search.trials_per_batch = 2
                with (
                    mock.patch.object(sweep_stage, "_run_batch", _fake_batch),
                    mock.patch.object(search, "_evaluate_best", lambda *a: {}),
                    mock.patch.object(search.plots, "search_trials", lambda *a: None),
                ):
                    search.run_search(config, workdir)
                with open(os.path.join(workdir, "trials.csv")) as f:
                    rows = [
                        {k: float(v) for k, v in r.items() if k in ("learning_rate", "reg")}
                        for r in csv.DictReader(f)
                        if r["stage"] != "0"
                    ]
                self.assertLen(rows, 16)
                distances[sampler].append(
                    np.mean([math.sqrt(-8 * math.log(_objective(r))) for r in rows])
                )
        tpe, rand = np.asarray(distances["tpe"]), np.asarray(distances["random"])
        self.assertTrue(np.all(tpe < rand), distances)
        self.assertLess(tpe.mean(), 0.8 * rand.mean(), distances)


@pytest.mark.slow
class SharedStudyTest(absltest.TestCase):
    def test_two_processes_per_storage_run_every_slot_once_with_one_process_best(self):
        # Two processes on one journal study and two on one SQLite study, all at once: each
        # claims slots atomically, so together they run exactly the planned 6 + 3 trials.
        flags = [
            "--config=configs/digits_sweep.py",
            "--config.search.stages=6x1,3x1",
            "--config.search.trials_per_batch=1",
            "--config.train.batch_size=100",
            "--config.train.train_eval_size=200",
        ]
        base = tempfile.mkdtemp()
        procs = {}
        for storage in ("journal", "sqlite"):
            workdir = os.path.join(base, storage)
            os.makedirs(workdir)
            extra = [f"--config.search.storage=sqlite:///{workdir}/study.db"] * (
                storage == "sqlite"
            )
            if storage == "sqlite":
                study.open_storage(extra[0].split("=", 1)[1], workdir)  # the tables, once
            procs[storage] = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "experiments.sweep",
                        *flags,
                        *extra,
                        f"--workdir={workdir}",
                    ],
                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    env={**os.environ, "JAX_PLATFORMS": "cpu"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
        config = _sweep_config(stages="6x1,3x1", trials_per_batch=1)
        one = search.run_search(config, tempfile.mkdtemp())
        for storage, pair in procs.items():
            errors = [p.communicate(timeout=300)[1] for p in pair]
            for p, err in zip(pair, errors):
                self.assertEqual(p.returncode, 0, err[-3000:])
                self.assertNotIn("finished by another process", err)  # no slot claimed twice
            workdir = os.path.join(base, storage)
            url = f"sqlite:///{workdir}/study.db" if storage == "sqlite" else None
            st = study.open_storage(url, workdir)
            ran = 0
            for stage, planned in ((0, 6), (1, 3)):
                trials = optuna.load_study(study_name=f"sweep.stage{stage}", storage=st).get_trials(
                    states=(optuna.trial.TrialState.COMPLETE,)
                )
                slots = sorted(t.user_attrs["slot"] for t in trials)
                self.assertEqual(slots, list(range(planned)), (storage, stage))  # none twice
                ran += len({t.user_attrs["owner"] for t in trials}) > 1  # both worked
            self.assertGreaterEqual(ran, 1, storage)
            with open(os.path.join(workdir, "summary.json")) as f:
                summary = json.load(f)
            self.assertEqual(summary["best"]["hparams"], one["best"]["hparams"], storage)
            self.assertEqual(summary["best"]["val_accuracy"], one["best"]["val_accuracy"])
            self.assertEqual(summary["num_trials"], 9)


class StudyTest(absltest.TestCase):
    def test_running_trial_without_owner_is_recovered(self):
        st = optuna.create_study()
        me = "host:1:token"
        orphan = st.ask()
        orphan.set_user_attr("slot", 3)  # killed before the owner was written
        mine = st.ask()
        mine.set_user_attr("owner", me)
        mine.set_user_attr("slot", 4)
        self.assertFalse(study.owner_alive("", me))
        self.assertTrue(study.owner_alive("otherhost:1:t", me))
        # Claimed a moment ago, its owner not written yet: alive for the grace period.
        self.assertEqual(study.recover(st, me), 0)
        with mock.patch.object(study, "OWNER_GRACE_SECONDS", 0.0):
            self.assertEqual(study.recover(st, me), 1)
        states = {t.number: t.state for t in st.get_trials()}
        self.assertEqual(states[orphan.number], optuna.trial.TrialState.FAIL)
        self.assertEqual(states[mine.number], optuna.trial.TrialState.RUNNING)
        # The orphan's slot is planned again; slot 4 is still held by its live trial.
        self.assertEqual(study.plan_slots(st, [{}] * 5), 4)  # slots 0-3
        waiting = st.get_trials(states=(optuna.trial.TrialState.WAITING,))
        self.assertEqual(sorted(t.user_attrs["slot"] for t in waiting), [0, 1, 2, 3])

    def test_bad_storage_url_is_a_value_error(self):
        with self.assertRaisesRegex(ValueError, "sqlite:///.*unset for <workdir>/study.journal"):
            study.open_storage("foo://bar", tempfile.mkdtemp())


class SearchFigureTest(absltest.TestCase):
    def test_search_names_and_figure_without_learning_rate_and_reg(self):
        self.assertEqual(search.SAMPLERS, tuple(samplers.SAMPLERS))
        # One numeric dimension (and a choice): val accuracy against it, no colour scale.
        dims = {
            "learning_rate": space.Dim(1e-4, 1.0, "log"),
            "optimizer": space.Dim(scale="choice", choices=("sgd", "adam")),
        }
        trials = [
            {
                "stage": s,
                "status": "complete",
                "hparams": {"learning_rate": lr, "optimizer": "sgd"},
                "train_accuracy": acc,
                "val_accuracy": acc,
            }
            for s, lr, acc in ((0, 1e-3, 0.5), (0, 1e-2, 0.7), (1, 3e-2, 0.8))
        ]
        path = os.path.join(tempfile.mkdtemp(), "search.png")
        plots.search_trials(trials, dims, path, trials[-1])
        self.assertGreater(os.path.getsize(path), 0)


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

    @parameterized.parameters("data_parallel", "shard_data")
    def test_a_training_runs_split_is_refused(self, field):
        config = _sweep_config()
        config.train[field] = True
        with self.assertRaisesRegex(ValueError, rf"its trials .*--config.train.{field}=False"):
            search.run_search(config, tempfile.mkdtemp())

    def test_bad_storage_is_rejected_and_the_workdir_untouched(self):
        workdir = tempfile.mkdtemp()
        with self.assertRaisesRegex(ValueError, "search.storage='foo://bar'.*sqlite:///"):
            search.run_search(_sweep_config(storage="foo://bar"), workdir)
        self.assertEqual(os.listdir(workdir), [])

    def test_num_epochs_in_space_conflicts_with_stages(self):
        config = _sweep_config()
        config.search.space.num_epochs = {"choices": [1, 2]}
        with self.assertRaisesRegex(ValueError, "conflicts with search.stages"):
            search.run_search(config, tempfile.mkdtemp())


if __name__ == "__main__":
    absltest.main()
