"""Multi-process sweeps (lib/search.py on lib/distributed.py): ``python -m experiments.sweep``
launched as two local processes (2 forced CPU devices each), by a fake Slurm step with no
flag or by scorelab's variables, runs one sweep whose trials.csv and summary.json equal one
process's with 4 devices; killing one process stops the other with one clear line, and the
same command resumes (here as one process with 4 devices); an experiment that does not run
multi-process refuses with one line.
"""

import csv
import json
import os
import subprocess
import time

import pytest
from absl.testing import absltest

from tests import multihost
from tests.distributed_test import free_port, scorelab_env, slurm_env

# A small digits sweep: 3 batches of 4 trials over 2 stages, then the best trial's test.
pytestmark = pytest.mark.slow  # whole experiments in several processes


SWEEP_FLAGS = (
    "--config.search.stages=8x1,4x2",
    "--config.search.trials_per_batch=4",
    "--config.train.batch_size=100",
    "--config.train.train_eval_size=200",
)
TIMINGS = ("seconds", "trials_per_second")  # the only fields that may differ


def _trials(workdir: str, drop: tuple[str, ...] = TIMINGS) -> list[dict[str, str]]:
    with open(os.path.join(workdir, "trials.csv")) as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def _summary(workdir: str, drop: tuple[str, ...] = TIMINGS) -> dict:
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = {k: v for k, v in json.load(f).items() if k not in drop}
    for stage in summary.get("stages", []):  # each stage's own time
        for key in drop:
            stage.pop(key, None)
    return summary


class MultiProcessSweepTest(multihost.ProcessTestCase):
    """Each process a fresh ``python -m experiments.sweep`` on the CPU."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The reference, one process with 4 devices, runs while the first test starts.
        cls.reference = os.path.join(cls.dir, "reference")
        cls.reference_proc = cls._launch(cls.reference, "reference", devices=4)

    @classmethod
    def _launch(cls, workdir: str, name: str, devices: int = 2, **env) -> subprocess.Popen:
        """The small sweep into ``workdir``; its stderr goes to ``<name>.log``."""
        return cls.launch(
            name, "experiments.sweep", (f"--workdir={workdir}", *SWEEP_FLAGS), devices, **env
        )

    def _start(self, workdir: str, name: str, devices: int = 2, **env) -> subprocess.Popen:
        args = (f"--workdir={workdir}", *SWEEP_FLAGS)
        return self.start(name, "experiments.sweep", args, devices=devices, **env)

    def _wait_reference(self) -> str:
        self.finish(self.reference_proc, "reference")
        return self.reference

    def _run_pair(self, workdir: str, name: str, envs) -> None:
        procs = [self._start(workdir, f"{name}{i}", **env) for i, env in enumerate(envs)]
        for i, p in enumerate(procs):
            self.finish(p, f"{name}{i}")

    def test_a_slurm_step_of_two_processes_writes_what_one_process_writes(self):
        # JAX's Slurm detection serves on port 61440 + SLURM_JOB_ID % 4096: pick a job id
        # whose port is free. No flag, no scorelab variable: srun's variables only.
        job_id = free_port(61440, 65535) - 61440 + 4096 * 11
        workdir = os.path.join(self.dir, "slurm")
        self._run_pair(workdir, "slurm", [slurm_env(i, job_id) for i in (0, 1)])
        self.assert_joined(["slurm0", "slurm1"], devices=4)  # each says so, once
        reference = self._wait_reference()
        self.assertNotIn(multihost.JOINED, self.log("reference"))  # one process joins nothing
        self.assertEqual(_trials(workdir), _trials(reference))
        self.assertEqual(_summary(workdir), _summary(reference))
        self.assertEqual(_summary(workdir)["devices"], 4)  # both processes' devices
        for name in ("best_hparams.json", "config.json"):
            with open(os.path.join(workdir, name)) as a, open(os.path.join(reference, name)) as b:
                self.assertEqual(a.read(), b.read(), name)
        self.assertEqual(sorted(os.listdir(workdir)), sorted(os.listdir(reference)))
        self.assertIn("best (stage", self.log("slurm0"))  # process 0 logs the sweep ...
        self.assertNotIn("trials done", self.log("slurm1"))  # ... the other stays quiet

    def test_a_killed_process_stops_the_other_and_the_same_command_resumes(self):
        port, workdir = free_port(), os.path.join(self.dir, "killed")
        envs = [{**scorelab_env(i, port), "SCORELAB_HEARTBEAT_TIMEOUT": "5"} for i in (0, 1)]
        main, follower = (self._start(workdir, f"killed{i}", **envs[i]) for i in (0, 1))
        self.wait_for("4/12 trials done", "killed0", main)  # the first batch is stored
        follower.kill()
        start = time.time()
        self.assertEqual(main.wait(timeout=multihost.WAIT_S), 1, self.log("killed0")[-3000:])
        self.assertLess(time.time() - start, 30)
        errors = [line for line in self.log("killed0").splitlines() if line.startswith("error")]
        self.assertLen(errors, 1, self.log("killed0")[-3000:])
        self.assertIn("another process died or was killed", errors[0])
        self.assertIn("run the same command again to resume", errors[0])
        self.assertNotIn("Traceback", self.log("killed0"))
        self.assertFalse(os.path.exists(os.path.join(workdir, "summary.json")))

        # The same command again, as one process with the pair's 4 devices.
        self.finish(self._start(workdir, "resumed", devices=4), "resumed")
        summary, reference = _summary(workdir), self._wait_reference()
        self.assertEqual(summary["num_trials"], 12)
        self.assertLess(summary["trials_run"], 12)  # the first batch was kept
        # The trials re-run (new Optuna numbers) computed what the reference computed.
        drop = (*TIMINGS, "trial")
        self.assertEqual(_trials(workdir, drop), _trials(reference, drop))
        for key in ("best", "test_accuracy", "val_accuracy", "devices"):
            best, expected = summary[key], _summary(reference)[key]
            if key == "best":
                best, expected = ({**b, "trial": None} for b in (best, expected))
            self.assertEqual(best, expected, key)

    def test_an_experiment_that_does_not_run_multi_process_refuses(self):
        workdir = os.path.join(self.dir, "gradcheck")
        args = ("--config=configs/digits_softmax.py", f"--workdir={workdir}")
        proc = self.start("gradcheck", "experiments.gradcheck", args, **slurm_env(0, 5))
        self.finish(proc, "gradcheck", status=2)
        log = self.log("gradcheck")
        self.assertEqual(
            [line for line in log.splitlines() if line.strip()],
            [
                (
                    "error: experiments.gradcheck does not run multi-process yet; launch it as "
                    "one process (unset SCORELAB_NUM_PROCESSES / run outside srun, or set "
                    "SCORELAB_NUM_PROCESSES=1); multi-process: experiments.sweep, "
                    "experiments.train, experiments.ensemble, experiments.tune"
                )
            ],
        )
        self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
    absltest.main()
