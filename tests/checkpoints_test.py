"""Damaged workdirs (lib/checkpoints.py, lib/metrics.py): a latest checkpoint cut short is
moved aside and the run resumes from the one before it, with a warning; a workdir that
cannot be resumed is one line and exit status 2; nothing already written is deleted."""

import filecmp
import glob
import os
import shutil
import tempfile

import jax
import numpy as np
from absl.testing import absltest

from lib import checkpoints, metrics
from tests.cli_test import run_in_process

FLAGS = [
    "--config.train.num_epochs=3",
    "--config.train.keep_checkpoints=0",
    "--config.train.checkpoint_every=1",
    "--config.dataset.num_train=200",
]


def _largest_file(folder):
    files = [f for f in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def _cut(path, keep=0.5):
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw[: int(len(raw) * keep)])


class DamagedWorkdirTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="checkpoints_test_")
        cls.complete = os.path.join(cls.root, "complete")
        status, stderr = cls.train(cls.complete)
        assert status in (0, None), stderr
        cls.final = checkpoints.restore(os.path.join(cls.complete, "checkpoints"), 3)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    @staticmethod
    def train(workdir, *flags):
        return run_in_process("experiments.train", [f"--workdir={workdir}", *FLAGS, *flags])

    def copy(self, name):
        workdir = os.path.join(self.root, name)
        shutil.copytree(self.complete, workdir)
        return workdir

    def assert_one_line(self, status, stderr, *parts):
        self.assertEqual(status, 2, stderr)
        self.assertNotIn("Traceback", stderr)
        lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
        self.assertLen(lines, 1, stderr)
        for part in parts:
            self.assertIn(part, lines[0])

    def test_a_cut_latest_checkpoint_is_moved_aside_and_the_run_resumes(self):
        for damage in ("data", "metadata"):
            with self.subTest(damage=damage):
                workdir = self.copy(f"cut_{damage}")
                ckpt = os.path.join(workdir, "checkpoints")
                step3 = os.path.join(ckpt, "3")
                if damage == "data":
                    _cut(_largest_file(step3))
                else:
                    _cut(os.path.join(step3, "default", "_METADATA"), keep=0)
                damaged = os.path.join(self.root, f"damaged_{damage}")
                shutil.copytree(step3, damaged)
                with self.assertLogs("absl", "WARNING") as logs:
                    self.assertEqual(checkpoints.steps(ckpt), [1, 2])
                self.assertIn("the checkpoint of step 3 cannot be read", "\n".join(logs.output))
                self.assertIn("resuming from step 2", "\n".join(logs.output))
                # Moved, not deleted: the damaged files as they were.
                aside = os.path.join(ckpt + ".damaged", "3")
                self.assertEmpty(filecmp.dircmp(damaged, aside).diff_files)
                self.assertFalse(os.path.exists(step3))
                # The run trains epoch 3 again: the same state as the undamaged run.
                status, stderr = self.train(workdir)
                self.assertIn(status, (0, None), stderr)
                again = checkpoints.restore(ckpt, 3)
                for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(self.final)):
                    np.testing.assert_array_equal(a, b)
                self.assertLen(metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")), 3)

    def test_a_workdir_with_no_readable_checkpoint_is_refused(self):
        workdir = self.copy("only_damaged")
        ckpt = os.path.join(workdir, "checkpoints")
        for step in ("1", "2", "3"):
            _cut(_largest_file(os.path.join(ckpt, step)))
        before = {f: os.path.getsize(f) for f in glob.glob(f"{workdir}/**", recursive=True)}
        status, stderr = self.train(workdir)
        self.assert_one_line(status, stderr, "no checkpoint in", "can be read", "aside")
        after = {f: os.path.getsize(f) for f in glob.glob(f"{workdir}/**", recursive=True)}
        self.assertEqual(before, after)  # nothing moved, nothing deleted, nothing written

    def test_restore_of_a_damaged_checkpoint_is_one_line(self):
        workdir = self.copy("restore")
        ckpt = os.path.join(workdir, "checkpoints")
        _cut(_largest_file(os.path.join(ckpt, "2")))
        with self.assertRaises(ValueError) as cm:
            checkpoints.restore(ckpt, 2)
        self.assertNotIn("\n", str(cm.exception))
        self.assertIn("the checkpoint of step 2", str(cm.exception))
        np.testing.assert_array_equal(checkpoints.restore(ckpt, 3)["epoch"], 3)

    def test_metrics_jsonl(self):
        workdir = self.copy("metrics")
        path = os.path.join(workdir, "metrics.jsonl")
        with open(path, "rb") as f:
            whole = f.read()
        with open(path, "wb") as f:  # the last record cut short by a kill
            f.write(whole[:-40])
        with self.assertLogs("absl", "WARNING") as logs:
            self.assertLen(metrics.read_jsonl(path), 2)
        self.assertIn("cut short", "\n".join(logs.output))
        status, stderr = self.train(workdir, "--config.train.num_epochs=4")
        self.assertIn(status, (0, None), stderr)
        # The run resumes from its checkpoint of epoch 3; the record cut short stays lost.
        self.assertEqual([r["epoch"] for r in metrics.read_jsonl(path)], [1, 2, 4])
        # A damaged line before the last: refused, the file left as it is.
        lines = whole.splitlines(keepends=True)
        damaged = lines[0] + b"\xff\xfe garbage\n" + b"".join(lines[2:])
        with open(path, "wb") as f:
            f.write(damaged)
        status, stderr = self.train(workdir, "--config.train.num_epochs=4")
        self.assert_one_line(status, stderr, "metrics.jsonl is damaged: line 2 of 3")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), damaged)

    def test_a_damaged_config_json_is_one_line(self):
        workdir = self.copy("config")
        _cut(os.path.join(workdir, "config.json"))
        status, stderr = self.train(workdir)
        self.assert_one_line(status, stderr, "config.json is damaged")


if __name__ == "__main__":
    absltest.main()
