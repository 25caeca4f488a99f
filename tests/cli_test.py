"""Tests for lib/cli.py: a mistake on the command line is one line and exit status 2, with
the fix named, never a library traceback; the workdir is not touched."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from configs import digits_ensemble, digits_sweep
from lib import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UnknownFieldTest(absltest.TestCase):
    PATHS = ["seed", "train.num_epochs", "train.batch_size", "optimizer.name", "loss.name"]

    def test_the_full_path_of_a_field_given_without_its_section(self):
        message = cli.unknown_field_message("num_epochs", self.PATHS)
        self.assertIn("no field 'num_epochs'", message)
        self.assertIn("did you mean --config.train.num_epochs?", message)

    def test_a_typo_is_matched_first(self):
        message = cli.unknown_field_message("optimizr.name", self.PATHS)
        self.assertIn("did you mean --config.optimizer.name", message)
        self.assertIn(
            "did you mean --config.train.num_epochs?",
            cli.unknown_field_message("train.num_epoch", self.PATHS),
        )

    def test_nothing_close(self):
        self.assertIn("--show_config", cli.unknown_field_message("zzz", self.PATHS))


class ShowConfigTest(absltest.TestCase):
    def test_every_field_is_documented_where_it_is_defined(self):
        docs = cli.field_docs()
        config = digits_sweep.get_config()
        config.ensemble = digits_ensemble.ensemble_block()
        text = cli.describe_config(config, docs)
        for line in text.splitlines():
            path = line.split(" = ")[0]
            if not path.startswith("search.space."):  # the space's entries are the user's
                self.assertIn("  # ", line, path)
        self.assertIn("train.num_epochs = 30", text)
        self.assertIn("# epochs to train", text)
        self.assertIn("seed = 0", text)


class CommandLineTest(absltest.TestCase):
    def test_config_mistakes_are_one_line_and_exit_status_2(self):
        cases = {
            "--config.num_epochs=1": "did you mean --config.train.num_epochs?",
            "--config.optimizer.learning_rate=-1": "set --config.optimizer.learning_rate to a",
            "--config.optimizer.name=adamw": "valid optimizer names: adagrad, adam",
        }
        workdir = os.path.join(tempfile.mkdtemp(), "run")
        procs = {
            flag: subprocess.Popen(
                [sys.executable, "-m", "experiments.train", flag, f"--workdir={workdir}"],
                cwd=ROOT,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for flag in cases
        }
        for flag, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, 2, stderr)
            self.assertNotIn("Traceback", stderr)
            lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
            self.assertLen(lines, 1, stderr)
            self.assertIn(cases[flag], lines[0])
        self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
    absltest.main()
