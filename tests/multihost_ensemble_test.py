"""Multi-process ensembles (lib/ensemble.py, lib/members.py on lib/distributed.py):
``python -m experiments.ensemble`` launched as two local processes (2 forced CPU devices
each, scorelab's variables) trains its members sharded over the 4 devices and writes the
summary.json and config.json that one process with 4 devices writes; process 0 alone
writes and prints.
"""

import json
import os
import subprocess

import pytest
from absl.testing import absltest

from tests import multihost
from tests.distributed_test import free_port, scorelab_env

# A small ensemble: 3 linear members (padded to 4 lanes) with a running average (source
# ema: the seeds' fit, plus the raw weights' evaluation), 2 epochs; 359 training rows, as
# many as the validation and test sets have, so that every split shares one compiled scoring.
pytestmark = pytest.mark.slow  # whole experiments in several processes


FLAGS = (
    "--config.dataset.num_train=359",
    "--config.ensemble.source=ema",
    "--config.ensemble.size=3",
    "--config.train.ema_decay=0.9",
    "--config.model.name=linear",
    "--config.train.num_epochs=2",
    "--config.train.batch_size=200",
    "--config.train.train_eval_size=200",
)
TIMINGS = ("seconds", "build_seconds")  # the only fields that may differ


class MultiProcessEnsembleTest(multihost.ProcessTestCase):
    """Each process a fresh ``python -m experiments.ensemble`` on the CPU."""

    def _start(self, name: str, devices: int, **env: str) -> subprocess.Popen:
        """The small ensemble into ``<dir>/<name without the process index>``."""
        args = (f"--workdir={os.path.join(self.dir, name.rstrip('01'))}", *FLAGS)
        return self.start(name, "experiments.ensemble", args, devices=devices, **env)

    def _summary(self, name: str) -> dict:
        summary = json.loads(self.read(os.path.join(name, "summary.json")))
        return {k: v for k, v in summary.items() if k not in TIMINGS}

    def test_two_processes_write_what_one_process_with_as_many_devices_writes(self):
        port = free_port()
        pair = [self._start(f"pair{i}", 2, **scorelab_env(i, port)) for i in (0, 1)]
        reference = self._start("reference", 4)  # concurrently: the machine has 2 cores
        for i, p in enumerate(pair):
            self.finish(p, f"pair{i}")
        self.finish(reference, "reference")
        summary = self._summary("pair")
        self.assertEqual(summary, self._summary("reference"))
        self.assertEqual(summary["size"], 3)
        self.assertEqual(summary["groups"][0]["names"], [f"ema seed 0/{i}" for i in range(3)])
        self.assertIn("raw", summary)
        for name in ("config.json", "ensemble.png"):
            self.assertTrue(os.path.exists(os.path.join(self.dir, "pair", name)), name)
        self.assertEqual(self.read("pair/config.json"), self.read("reference/config.json"))
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.dir, "pair"))),
            sorted(os.listdir(os.path.join(self.dir, "reference"))),
        )
        self.assertIn("ensemble (proba)", self.read("pair0.out"))  # process 0 prints ...
        self.assertNotIn("ensemble (proba)", self.read("pair1.out"))  # ... the other not
        self.assert_joined(["pair0", "pair1"], devices=4)
        self.assertNotIn(multihost.JOINED, self.log("reference"))


if __name__ == "__main__":
    absltest.main()
