"""What the multi-process tests share: an experiment launched as a local process, a fresh
``python -m experiments.<name>`` on the CPU with forced CPU devices, its stdout and stderr in
files of the test's folder, never waited for longer than ``WAIT_S`` and killed if a test
leaves it running. Two of them form one multi-process run with ``scorelab_env`` or
``slurm_env`` (tests/distributed_test.py)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest

from tests.distributed_test import clean_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT_S = 120  # no subprocess is ever waited for longer
JOINED = "joined a multi-process run"  # the line each process logs when it joins


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
        p.wait(timeout=WAIT_S)


class ProcessTestCase(absltest.TestCase):
    """A folder per test class (``dir``) for the processes' workdirs and output; a class's
    process started in ``setUpClass`` (``reference_proc``) is stopped when the class ends."""

    reference_proc: subprocess.Popen | None = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix=f"{cls.__name__}_")

    @classmethod
    def tearDownClass(cls):
        if cls.reference_proc is not None:
            _stop(cls.reference_proc)
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.procs: list[subprocess.Popen] = []

    def tearDown(self):
        for p in self.procs:  # only this test's
            _stop(p)
        super().tearDown()

    @classmethod
    def launch(
        cls, name: str, module: str, args: tuple[str, ...] = (), devices: int = 2, **env: str
    ) -> subprocess.Popen:
        """Starts ``python -m <module> <args>`` with ``devices`` CPU devices and ``env``;
        its stdout goes to ``<name>.out``, its stderr to ``<name>.log`` in ``dir``."""
        env = clean_env(
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            JAX_PLATFORMS="cpu",
            SCORELAB_XLA_CACHE="",  # compile afresh: no cache shared between processes
            SCORELAB_INIT_TIMEOUT="30",
            **env,
        )
        with (
            open(os.path.join(cls.dir, f"{name}.out"), "w") as out,
            open(os.path.join(cls.dir, f"{name}.log"), "w") as log,
        ):
            return subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out, stderr=log
            )

    def start(self, name: str, module: str, args: tuple[str, ...] = (), **kwargs):
        """``launch``, killed at the end of the test if still running."""
        self.procs.append(self.launch(name, module, args, **kwargs))
        return self.procs[-1]

    def read(self, path: str) -> str:
        """The text of ``path`` (relative to ``dir``)."""
        with open(os.path.join(self.dir, path)) as f:
            return f.read()

    def log(self, name: str) -> str:
        return self.read(f"{name}.log")

    def finish(self, proc: subprocess.Popen, name: str, status: int = 0) -> None:
        """Waits for ``proc`` and checks its exit status (its log's end if not)."""
        self.assertEqual(proc.wait(timeout=WAIT_S), status, self.log(name)[-3000:])

    def assert_joined(self, names: list[str], devices: int) -> None:
        """Process i (log ``names[i]``) logged once that it joined as process i of all of
        ``names``, ``devices`` CPU devices in all."""
        for i, name in enumerate(names):
            lines = [line for line in self.log(name).splitlines() if JOINED in line]
            self.assertLen(lines, 1, self.log(name)[-3000:])
            expected = f"] {JOINED}: process {i} of {len(names)}, {devices} devices in all (cpu)"
            self.assertTrue(lines[0].endswith(expected), lines[0])

    def wait_for(self, text: str, name: str, proc: subprocess.Popen) -> None:
        """Waits until ``text`` appears in ``<name>.log``, while ``proc`` runs."""
        deadline = time.time() + WAIT_S
        while text not in self.log(name):
            self.assertLess(time.time(), deadline, self.log(name)[-3000:])
            self.assertIsNone(proc.poll(), self.log(name)[-3000:])
            time.sleep(0.05)
