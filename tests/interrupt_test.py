"""Tests for lib/interrupt.py: SIGINT and SIGTERM stop a training run or a sweep at a safe
point, in real processes signalled at several moments (while XLA compiles, in the middle of
a batch of trials, while a checkpoint is saved); the rerun then ends where an uninterrupted
run ends."""

import csv
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from absl.testing import absltest

from configs import digits_softmax, digits_sweep
from lib import checkpoints, interrupt, metrics, search, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FLAGS = (
    "--config=configs/digits_softmax.py",
    "--config.train.num_epochs=4",
    "--config.train.checkpoint_every=1",
)
SWEEP_FLAGS = (
    "--config=configs/digits_sweep.py",
    "--config.search.stages=8x1,4x2",
    "--config.search.trials_per_batch=4",
    "--config.train.batch_size=100",
    "--config.train.train_eval_size=200",
)


def _run(module, workdir, flags, marker=None, signum=None):
    """Runs ``python -m module``; with ``marker``, sends ``signum`` as soon as a line holding
    it reaches stderr. Returns (exit status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *flags, f"--workdir={workdir}"],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    if marker is not None:
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                proc.send_signal(signum)
                break
    _, rest = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + rest


def _trials(workdir):
    """trials.csv without what depends on the run's history (trial numbers, seconds)."""
    with open(os.path.join(workdir, "trials.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(
        (r["stage"], int(r["slot"]), r["seed"], r["learning_rate"], r["reg"], r["val_accuracy"])
        for r in rows
    )


class DeferredTest(absltest.TestCase):
    def test_a_signal_waits_for_the_next_safe_point(self):
        with interrupt.deferred():
            interrupt.check()  # nothing received: a no-op
            os.kill(os.getpid(), signal.SIGTERM)
            with self.assertRaises(interrupt.Interrupted) as caught:
                interrupt.check()
        self.assertEqual(caught.exception.exit_status, 143)
        self.assertIn("SIGTERM", str(caught.exception))
        interrupt.check()  # cleared on leaving; the default handlers are back
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)


@pytest.mark.slow
class StopAndResumeTest(absltest.TestCase):
    def assertStoppedCleanly(self, status, stderr, expected):
        self.assertEqual(status, expected, stderr[-3000:])
        self.assertNotIn("Traceback", stderr)
        self.assertNotIn("Fatal Python error", stderr)
        self.assertIn("run the same command again to resume", stderr)

    def test_training_stopped_while_saving_resumes_to_the_same_result(self):
        workdir = tempfile.mkdtemp()
        # SIGINT as epoch 2 is logged: it lands while epoch 2's checkpoint is written.
        status, stderr = _run(
            "experiments.train", workdir, TRAIN_FLAGS, "epoch   2/4", signal.SIGINT
        )
        self.assertStoppedCleanly(status, stderr, 130)
        ckpt_dir = os.path.join(workdir, "checkpoints")
        # Stopped after epoch 2's save (or, on a slow machine, epoch 3's), before the end.
        self.assertIn(checkpoints.steps(ckpt_dir), ([1, 2], [1, 2, 3]))
        self.assertEqual([n for n in os.listdir(ckpt_dir) if "tmp" in n], [])
        status, stderr = _run("experiments.train", workdir, TRAIN_FLAGS)
        self.assertEqual(status, 0, stderr[-3000:])
        resumed = metrics.read_json(os.path.join(workdir, "summary.json"))
        config = digits_softmax.get_config()
        config.train.num_epochs = 4
        whole = train.train_and_evaluate(config, tempfile.mkdtemp())
        for key in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
            self.assertEqual(resumed[key], whole[key], key)

    def test_sweep_stopped_mid_batch_and_while_compiling_resumes_to_the_same_trials(self):
        workdir = tempfile.mkdtemp()
        # SIGINT after stage 0's first batch: it lands while the second batch trains (that
        # batch finishes and is stored before the sweep stops) or, on a loaded machine,
        # before the sweep claimed it (it stops before claiming).
        status, stderr = _run(
            "experiments.sweep", workdir, SWEEP_FLAGS, "stage 0 (1 of 2): 4/12", signal.SIGINT
        )
        self.assertStoppedCleanly(status, stderr, 130)
        self.assertNotIn("stage 0 (1 of 2): 12/12", stderr)  # it stopped inside stage 0
        # SIGTERM as stage 1 begins: it lands while stage 1 (2 epochs) compiles.
        status, stderr = _run(
            "experiments.sweep", workdir, SWEEP_FLAGS, "stage 1 (2 of 2): 4 trials", signal.SIGTERM
        )
        self.assertStoppedCleanly(status, stderr, 143)
        status, stderr = _run("experiments.sweep", workdir, SWEEP_FLAGS)
        self.assertEqual(status, 0, stderr[-3000:])
        config = digits_sweep.get_config()
        for flag in SWEEP_FLAGS[1:]:
            path, value = flag[len("--config.") :].split("=")
            section, field = path.split(".")
            config[section][field] = type(config[section][field])(value)
        whole = tempfile.mkdtemp()
        search.run_search(config, whole)
        self.assertEqual(_trials(workdir), _trials(whole))
        self.assertLen(_trials(workdir), 12)


if __name__ == "__main__":
    absltest.main()
