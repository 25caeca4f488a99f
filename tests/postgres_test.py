"""Sweep workers sharing one study on a real PostgreSQL server (lib/study.py): the server whose
URL is in ``SCORELAB_TEST_POSTGRES`` (tests/postgres.sh starts one; .ci/run does). Each test
gets a new database. Workers that open an empty database at the same moment all open it;
three ``experiments.sweep`` workers finish exactly the planned trials, no slot twice, with
one process's best; a worker killed with SIGKILL mid-batch has its trials run by the others
once their heartbeats stop (and not while they go on). Without the variable the tests are
skipped, except on CI (``CI=true``), where that is a failure.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import uuid

import optuna
import pytest
import sqlalchemy
from absl.testing import absltest
from optuna.trial import TrialState

from lib import study
from tests import multihost
from tests.distributed_test import clean_env

pytestmark = pytest.mark.slow  # whole experiments in several processes


ENV_URL = "SCORELAB_TEST_POSTGRES"
# 3 batches of 4 trials in stage 0, one in stage 1, then the best trial's test.
SWEEP_FLAGS = (
    "--config.search.stages=12x1,4x2",
    "--config.search.trials_per_batch=4",
    "--config.train.batch_size=100",
    "--config.train.train_eval_size=200",
)
PLANNED = (12, 4)  # slots per stage
HEARTBEAT = ("--config.search.heartbeat_interval=1", "--config.search.grace_period=3")

# argv: repo. Once imported, opens the storage of each database URL that comes on stdin and
# answers "opened" or the error, on one line.
_OPEN = """
import sys
sys.path.insert(0, sys.argv[1])
from lib import study
print("ready", flush=True)
for url in sys.stdin:
    try:
        study.open_storage(url.strip(), ".")
        print("opened", flush=True)
    except Exception as e:
        print(repr(e).replace("\\n", " "), flush=True)
"""

# argv: repo, workdir, database URL, flag file. A worker of the tests' sweep (heartbeats every
# 1 s, grace 3 s) that stops in its first batch, after training and before telling it: it
# writes the flag file and sleeps, its trials RUNNING, until it is killed.
_STOPS_IN_ITS_FIRST_BATCH = """
import sys, time
sys.path.insert(0, sys.argv[1])
from configs import digits_sweep
from lib import search

def stop(stage, results):
    open(sys.argv[4], "w").close()
    time.sleep(600)

c = digits_sweep.get_config()
c.search.stages, c.search.trials_per_batch = "12x1,4x2", 4
c.train.batch_size, c.train.train_eval_size = 100, 200
c.search.storage = sys.argv[3]
c.search.heartbeat_interval, c.search.grace_period = 1, 3
search.run_search(c, sys.argv[2], callback=stop)
"""


def server_url() -> str:
    """The test server's URL; skips the test without one, fails on CI."""
    url = os.environ.get(ENV_URL)
    if url:
        return url
    if os.environ.get("CI") == "true":
        raise AssertionError(f"{ENV_URL} is not set on CI: .ci/run starts the server")
    raise unittest.SkipTest(
        f'no PostgreSQL server: eval "$(tests/postgres.sh start)" sets {ENV_URL}'
    )


def new_database(url: str) -> str:
    """The URL of a new, empty database on the server of ``url``."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return sqlalchemy.engine.make_url(url).set(database=name).render_as_string(False)


def trials(url: str, stage: int) -> list:
    """Every trial of stage ``stage`` of the study ``sweep`` in the database ``url``."""
    storage = study.open_storage(url, ".")
    return optuna.load_study(study_name=f"sweep.stage{stage}", storage=storage).get_trials()


def complete_slots(url: str, stage: int) -> list[int]:
    return sorted(
        t.user_attrs["slot"] for t in trials(url, stage) if t.state == TrialState.COMPLETE
    )


def summary(workdir: str) -> dict:
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def values_by_slot(workdir: str) -> dict:
    with open(os.path.join(workdir, "trials.csv")) as f:
        return {(r["stage"], r["slot"]): r["val_accuracy"] for r in csv.DictReader(f)}


class OpenTogetherTest(absltest.TestCase):
    def test_four_workers_opening_an_empty_database_at_once_all_open_it(self):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN, multihost.REPO],
                env=clean_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        self.addCleanup(lambda: [p.kill() for p in procs])
        for p in procs:  # all imported ...
            self.assertEqual(p.stdout.readline(), "ready\n")
        for _ in range(5):  # the race is lost most times, not always: five empty databases
            url = new_database(server_url())
            for p in procs:  # ... then all at once
                p.stdin.write(url + "\n")
                p.stdin.flush()
            self.assertEqual([p.stdout.readline() for p in procs], ["opened\n"] * 4)
            self.assertEqual(optuna.get_all_study_summaries(study.open_storage(url, ".")), [])
        for p in procs:
            p.stdin.close()
            self.assertEqual(p.wait(timeout=multihost.WAIT_S), 0)


class PostgresSweepTest(multihost.ProcessTestCase):
    """Each worker a fresh ``python -m experiments.sweep`` (one CPU device) in its own
    workdir, as on machines of their own."""

    @classmethod
    def setUpClass(cls):
        server_url()  # skips the class (or fails on CI) before anything starts
        super().setUpClass()
        # The reference, one process on its journal file, runs while the first test starts.
        cls.reference = os.path.join(cls.dir, "reference")
        cls.reference_proc = cls.launch(
            "reference", "experiments.sweep", (f"--workdir={cls.reference}", *SWEEP_FLAGS), 1
        )

    def _worker(self, name: str, url: str, *flags: str) -> subprocess.Popen:
        args = (f"--workdir={os.path.join(self.dir, name)}", *SWEEP_FLAGS, *flags)
        args = (*args, f"--config.search.storage={url}")
        return self.start(name, "experiments.sweep", args, devices=1)

    def _reference(self) -> str:
        self.finish(self.reference_proc, "reference")
        return self.reference

    def _check_each_slot_once(self, url: str) -> None:
        for stage, planned in enumerate(PLANNED):
            self.assertEqual(complete_slots(url, stage), list(range(planned)), stage)

    def _check_same_best(self, workdirs: list[str]) -> None:
        reference = summary(self._reference())
        for workdir in workdirs:
            got = summary(workdir)
            self.assertEqual(got["num_trials"], sum(PLANNED), workdir)
            for key in ("val_accuracy", "test_accuracy"):
                self.assertEqual(got[key], reference[key], (workdir, key))
            self.assertEqual(got["best"]["hparams"], reference["best"]["hparams"], workdir)
            self.assertEqual(values_by_slot(workdir), values_by_slot(self.reference), workdir)

    def test_three_workers_run_every_slot_once_with_one_process_best(self):
        url = new_database(server_url())
        names = [f"worker{i}" for i in range(3)]
        procs = [self._worker(name, url) for name in names]  # at once, on an empty database
        for p, name in zip(procs, names):
            self.finish(p, name)
        self._check_each_slot_once(url)
        ran = [summary(os.path.join(self.dir, name))["trials_run"] for name in names]
        self.assertEqual(sum(ran), sum(PLANNED), ran)  # no trial ran twice
        self.assertGreaterEqual(min(ran), 1, ran)  # each worker took a share
        self._check_same_best([os.path.join(self.dir, name) for name in names])

    def test_a_worker_killed_mid_batch_has_its_trials_run_by_the_others(self):
        url = new_database(server_url())
        flag = os.path.join(self.dir, "stopped")
        with open(os.path.join(self.dir, "victim.log"), "w") as log:
            victim = subprocess.Popen(
                [sys.executable, "-c", _STOPS_IN_ITS_FIRST_BATCH, multihost.REPO]
                + [os.path.join(self.dir, "victim"), url, flag],
                env=clean_env(JAX_PLATFORMS="cpu"),
                stderr=log,
            )
        self.procs.append(victim)
        self._wait_for_file(flag, victim)
        held = [t for t in trials(url, 0) if t.state == TrialState.RUNNING]
        self.assertLen(held, 4)
        running = [t.number for t in held]
        names = ("survivor0", "survivor1")
        procs = [self._worker(name, url, *HEARTBEAT) for name in names]
        self.wait_for("waiting for 4 trials other processes are running", names[0], procs[0])
        time.sleep(4)  # past the grace period: the victim's heartbeats keep its trials
        self.assertEqual(
            [t.number for t in trials(url, 0) if t.state == TrialState.RUNNING], running
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=multihost.WAIT_S)
        killed = time.time()
        for p, name in zip(procs, names):
            self.finish(p, name)
        self.assertLess(time.time() - killed, 45)  # the grace period is 3 s, not the default

        self._check_each_slot_once(url)
        stage0 = trials(url, 0)
        # Failed: the victim's, and any trial popped as a copy (or none) of a slot and dropped.
        failed = [t for t in stage0 if t.state == TrialState.FAIL and "dropped" not in t.user_attrs]
        self.assertEqual(sorted(t.number for t in failed), sorted(running))
        for t in held:  # queued again once, with its slot and params, and finished
            again = [u for u in stage0 if u.system_attrs.get("failed_trial") == t.number]
            self.assertLen(again, 1)
            self.assertEqual(again[0].state, TrialState.COMPLETE)
            self.assertEqual(again[0].user_attrs["slot"], t.user_attrs["slot"])
            self.assertEqual(again[0].params, t.params)
        ran = [summary(os.path.join(self.dir, name))["trials_run"] for name in names]
        self.assertEqual(sum(ran), sum(PLANNED), ran)  # the victim told none of them
        self._check_same_best([os.path.join(self.dir, name) for name in names])

    def _wait_for_file(self, path: str, proc: subprocess.Popen) -> None:
        deadline = time.time() + multihost.WAIT_S
        while not os.path.exists(path):
            self.assertLess(time.time(), deadline, self.log("victim")[-3000:])
            self.assertIsNone(proc.poll(), self.log("victim")[-3000:])
            time.sleep(0.05)


if __name__ == "__main__":
    absltest.main()
