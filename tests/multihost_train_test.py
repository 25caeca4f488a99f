"""Data-parallel training (lib/train.py with ``train.data_parallel``) launched as two local
processes with 2 forced CPU devices each: each minibatch and the training rows are split over
the 4 devices and the run computes what one device computes (up to float rounding); a signal to one process stops
both at the same epoch with a checkpoint, which one process with one device resumes.
"""

import json
import os
import signal

import numpy as np
import pytest
from absl.testing import absltest

from tests import multihost
from tests.distributed_test import free_port, scorelab_env

# Digits softmax, 60 short epochs (about 0.2 s each as two processes): time to signal one;
# 1076 training rows and 52 a batch, so that the 4 devices split both evenly.
pytestmark = pytest.mark.slow  # whole experiments in several processes


FLAGS = (
    "--config=configs/digits_softmax.py",
    "--config.dataset.num_train=1076",
    "--config.train.num_epochs=60",
    "--config.train.batch_size=52",
    "--config.train.checkpoint_every=100",
)
TIMINGS = ("seconds", "wall_seconds")


def _records(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in f]


def _summary(workdir: str) -> dict:
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


class DataParallelTrainTest(multihost.ProcessTestCase):
    """Each process a fresh ``python -m experiments.train`` on the CPU."""

    def _start(self, name: str, workdir: str, *flags: str, devices: int = 2, **env):
        """The digits run (``FLAGS`` and ``flags``) into ``workdir``; stderr in name.log."""
        args = (f"--workdir={workdir}", *FLAGS, *flags)
        return self.start(name, "experiments.train", args, devices=devices, **env)

    def test_two_processes_train_as_one_device_and_another_count_resumes(self):
        reference = os.path.join(self.dir, "reference")  # one device, meanwhile
        ref = self._start("reference", reference, devices=1)
        workdir, port = os.path.join(self.dir, "pair"), free_port()
        parallel = ("--config.train.data_parallel=True", "--config.train.shard_data=True")
        main, other = (
            self._start(f"pair{i}", workdir, *parallel, **scorelab_env(i, port)) for i in (0, 1)
        )
        self.wait_for("epoch   2/60", "pair0", main)
        other.send_signal(signal.SIGTERM)  # to one process only: both stop at one epoch
        self.finish(other, "pair1", status=143)
        self.finish(main, "pair0", status=143)
        self.assertIn("stopped by SIGTERM at a safe point", self.log("pair0"))
        stopped = _records(workdir)
        saved = os.listdir(os.path.join(workdir, "checkpoints"))
        self.assertEqual(saved, [str(len(stopped))])  # written once, at the last epoch done
        self.assertBetween(len(stopped), 2, 59)
        self.assertFalse(os.path.exists(os.path.join(workdir, "summary.json")))

        # One process, one device, not data parallel, resumes the two processes' checkpoint.
        self.finish(self._start("resumed", workdir, devices=1), "resumed")
        self.assertIn(f"from the checkpoint of epoch {len(stopped)}", self.log("resumed"))
        self.assert_joined(["pair0", "pair1"], devices=4)
        self.assertNotIn(multihost.JOINED, self.log("resumed"))  # one process joins nothing
        self.finish(ref, "reference")
        got, expected = _records(workdir), _records(reference)
        self.assertEqual(got[: len(stopped)], stopped)
        self.assertEqual([r["epoch"] for r in got], list(range(1, 61)))
        for name in expected[0]:  # float rounding apart, what one device computed
            np.testing.assert_allclose(
                [r[name] for r in got], [r[name] for r in expected], rtol=1e-5, err_msg=name
            )
        summary = _summary(workdir)
        for name, value in _summary(reference).items():
            if name not in TIMINGS:
                np.testing.assert_allclose(summary[name], value, rtol=1e-5, err_msg=name)


if __name__ == "__main__":
    absltest.main()
