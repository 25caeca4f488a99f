"""Tests for lib/cli.py: a mistake on the command line is one line and exit status 2, with
the fix named, never a library traceback; the workdir is not touched."""

import contextlib
import glob
import io
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile

import pytest
from absl import flags
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


def _experiments() -> dict[str, tuple[str | None, str]]:
    """{module: (its default config or None, a config written for it)} for every experiment
    with a ``--config`` flag (``cli.define_config``), found in experiments/*.py."""
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
        with open(path) as f:
            source = f.read()
        defined = re.search(r'cli\.define_config\(\s*(None|"([^"]+)")', source)
        if defined:
            example = re.search(r"--config=(configs/\w+\.py)", source)
            config = defined.group(2) or (example.group(1) if example else None)
            found[f"experiments.{os.path.basename(path)[:-3]}"] = (defined.group(2), config)
    return found


def run_in_process(module: str, args: list[str]) -> tuple[object, str]:
    """Runs ``python -m <module> <args>`` in this process; (its exit status, its stderr).

    A traceback would be an exception raised here. The flags the run defined (the
    experiment's own, the config's overrides) are removed again afterwards."""
    before, argv, stderr = set(flags.FLAGS), sys.argv, io.StringIO()
    sys.argv = [module, *args]
    try:
        with contextlib.redirect_stderr(stderr):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as e:
        status = e.code
    finally:
        sys.argv = argv
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
    return status, stderr.getvalue()


# A mistake of each kind, and what its one line must say.
MISTAKES = {
    "unknown_field": (["--config.num_epochs=1"], "did you mean --config.train.num_epochs?"),
    "typo": (["--config.train.num_epoch=3"], "did you mean --config.train.num_epochs?"),
    "not_a_number": (["--config.train.num_epochs=abc"], "--config.train.num_epochs=abc"),
    "out_of_range": (["--config.dataset.num_train=0"], "num_train=0 must be a positive"),
    "wrong_name": (["--config.model.name=nope"], "'nope'; valid"),
    "missing_data": (
        ["--config.dataset.name=cifar10", "--config.dataset.data_dir=/nonexistent"],
        "folder '/nonexistent' does not exist",
    ),
}


class CommandLineTest(absltest.TestCase):
    def assert_one_line(self, status, stderr, want, workdir):
        self.assertEqual(status, 2, stderr)
        self.assertNotIn("Traceback", stderr)
        lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
        self.assertLen(lines, 1, stderr)
        self.assertIn(want, lines[0])
        self.assertFalse(os.path.exists(workdir), workdir)

    def test_every_mistake_with_every_experiment_and_config(self):
        experiments = _experiments()
        self.assertContainsSubset(
            ["experiments.train", "experiments.sweep", "experiments.ensemble"], experiments
        )
        self.assertIn("experiments.gradcheck", experiments)
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        for module, (default, config) in experiments.items():
            configs = {"explicit": [f"--config={config}"]}
            if default is not None:  # (gradcheck has none: --config is required)
                configs["default"] = []
            for how, config_args in configs.items():
                for kind, (args, want) in MISTAKES.items():
                    with self.subTest(module=module, config=how, mistake=kind):
                        workdir = os.path.join(root, f"{module}-{how}-{kind}")
                        status, stderr = run_in_process(
                            module, [*config_args, *args, f"--workdir={workdir}"]
                        )
                        self.assert_one_line(status, stderr, want, workdir)

    def test_a_config_for_another_experiment(self):
        workdir = os.path.join(tempfile.mkdtemp(), "run")
        status, stderr = run_in_process(
            "experiments.sweep", ["--config=configs/digits_softmax.py", f"--workdir={workdir}"]
        )
        self.assert_one_line(
            status, stderr, "no field 'search', which experiments.sweep reads", workdir
        )
        self.assertIn("--config=configs/digits_sweep.py", stderr)

    def test_an_override_without_a_config_file(self):
        status, stderr = run_in_process("experiments.gradcheck", ["--config.model.name=linear"])
        self.assert_one_line(status, stderr, "pass --config=configs/<name>.py", "/nonexistent")

    @pytest.mark.slow
    def test_exit_status_2_from_the_command_line(self):
        # One process per experiment, started together: the real exit status and stderr.
        cases = {
            "experiments.train": (["--config=configs/digits_softmax.py"], "typo"),
            "experiments.sweep": (["--config=configs/digits_sweep.py"], "unknown_field"),
            "experiments.ensemble": ([], "wrong_name"),
            "experiments.gradcheck": (["--config=configs/digits_softmax.py"], "missing_data"),
        }
        root = tempfile.mkdtemp()
        procs = {
            module: subprocess.Popen(
                [sys.executable, "-m", module, *config, *MISTAKES[kind][0]]
                + [f"--workdir={os.path.join(root, module)}"],
                cwd=ROOT,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for module, (config, kind) in cases.items()
        }
        for module, proc in procs.items():
            _, stderr = proc.communicate(timeout=300)
            want = MISTAKES[cases[module][1]][1]
            self.assert_one_line(proc.returncode, stderr, want, os.path.join(root, module))


if __name__ == "__main__":
    absltest.main()
