"""Tests for lib/distributed.py: two local processes (2 forced CPU devices each) form one
4-device mesh and compute a sharded batch of 8 trials exactly as one process with 4 devices
does, launched by scorelab's variables or by a fake Slurm step; a dead, hung or failing
process makes its peer exit non-zero within seconds; one process is left untouched."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from unittest import mock

import jax
import numpy as np
import pytest
from absl.testing import absltest
from jax.sharding import PartitionSpec

from lib import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT_S = 60  # no subprocess is ever waited for longer

# argv: repo, mode ("once", "loop" or "raise"), output path. Trains 8 tiny logistic
# regressions (one learning rate each, broadcast from process 0) sharded over "trials".
_WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from lib import checkpoints, distributed
distributed.initialize()
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P

mode, out = sys.argv[2], sys.argv[3]
mesh = distributed.global_mesh("trials")
assert mesh.size == 4, jax.devices()
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 3)).astype(np.float32)
y = (x @ np.array([1.0, -2.0, 0.5], np.float32) > 0).astype(np.float32)
lrs = np.geomspace(0.01, 3.0, 8).astype(np.float32)
lrs = distributed.broadcast_from_main(lrs if distributed.is_main() else np.zeros_like(lrs))
big = distributed.broadcast_from_main(  # 64-bit values must arrive exactly
    (np.int64(2**40 + 3), np.float64(1 / 3)) if distributed.is_main() else (np.int64(0), 0.0)
)
assert big[0] == 2**40 + 3 and big[1] == 1 / 3, big
sent = {"op": "fit", "optimizer": "momentum", "x": [1 / 3, 2**40 + 3, None], "n": np.int64(7)}
got = distributed.broadcast_json(sent if distributed.is_main() else None)
assert got == {**sent, "n": 7}, got
distributed.check_same_on_all("the toy data", x, y, {"seed": 0})
distributed.barrier("checked")


def fit(lr, x, y):
    def loss(w):
        z = x @ w
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z)

    def step(w, _):
        return w - lr * jax.grad(loss)(w), loss(w)

    return jax.lax.scan(step, jnp.zeros(3), None, length=25)


fit_trials = jax.jit(jax.vmap(fit, in_axes=(0, None, None)))
trials = distributed.global_array(lrs, mesh, P("trials"))
data = [distributed.global_array(a, mesh, P()) for a in (x, y)]
w, losses = fit_trials(trials, *data)
lanes = sorted(i for s in w.addressable_shards for i in range(8)[s.index[0]])
w, losses = distributed.gather((w, losses))
result = {"processes": jax.process_count(), "lrs": lrs.tolist(), "w": w.tolist(),
          "losses": losses.tolist()}
with open(f"{out}.{jax.process_index()}", "w") as f:
    json.dump({**result, "lanes": lanes}, f)
if distributed.is_main():
    with open(out, "w") as f:
        json.dump(result, f)
    # Process 0 alone saves and restores with orbax while the other waits (no deadlock).
    ckpt = f"{out}.ckpt"
    checkpoints.save(ckpt, 0, {"w": w}, solo=True)
    assert checkpoints.steps(ckpt, solo=True) == [0], checkpoints.steps(ckpt, solo=True)
    assert np.array_equal(checkpoints.restore(ckpt, 0, like={"w": w}, solo=True)["w"], w)
distributed.barrier("saved")
if mode == "once":  # last: a failed check leaves the multi-process run
    try:
        distributed.check_same_on_all("the process ids", np.int32(jax.process_index()))
        assert jax.process_count() == 1, "different values passed the check"
    except ValueError as e:  # raised on every process alike
        assert "differ between processes: process(es) [1]" in str(e), e
if mode != "once":
    print("ready", flush=True)
    end = time.time() + 60
    for i in range(100000):
        if mode == "raise" and jax.process_index() == 1 and i == 3:
            raise RuntimeError("a bug on process 1")
        distributed.gather(fit_trials(trials, *data))
        if time.time() > end:
            break
        time.sleep(0.05)
"""

# Anything in the caller's environment that would start (or change) a distributed run.
LAUNCH_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "OMPI_MCA_orte_hnp_uri",
    "JAX_COORDINATOR_ADDRESS",
    "JAX_COORDINATOR_PORT",
    distributed.ENV_COORDINATOR,
    distributed.ENV_NUM_PROCESSES,
    distributed.ENV_PROCESS_ID,
    distributed.ENV_HEARTBEAT,
    distributed.ENV_INIT_TIMEOUT,
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``LAUNCH_VARS``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    return {**env, **extra}


def free_port(low: int = 0, high: int = 0) -> int:
    """A port nobody listens on: any (``low == 0``) or one in [low, high]."""
    for _ in range(200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", random.randint(low, high) if low else 0))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in [{low}, {high}]")


def slurm_env(process: int, job_id: int) -> dict[str, str]:
    """A fake ``srun -n 2`` step on one node: only the variables JAX's detection reads."""
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(process),
        "SLURM_LOCALID": str(process),
    }


def scorelab_env(process: int, port: int) -> dict[str, str]:
    """Process ``process`` of 2 by scorelab's variables, the coordinator on ``port``."""
    return {
        distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
        distributed.ENV_NUM_PROCESSES: "2",
        distributed.ENV_PROCESS_ID: str(process),
    }


@pytest.mark.slow
class TwoProcessTest(absltest.TestCase):
    """Real ``jax.distributed`` runs: each process a fresh interpreter on the CPU."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="distributed_test_")  # create_tempdir needs flags
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.script = os.path.join(self.dir, "worker.py")
        with open(self.script, "w") as f:
            f.write(_WORKER)
        self.procs: list[subprocess.Popen] = []

    def tearDown(self):
        for p in self.procs:  # only ours; a stopped one dies on SIGKILL too
            if p.poll() is None:
                p.kill()
                p.wait(timeout=WAIT_S)
        super().tearDown()

    def _start(self, mode: str, out: str, devices: int, **env: str) -> subprocess.Popen:
        env = clean_env(
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            JAX_PLATFORMS="cpu",
            **{distributed.ENV_INIT_TIMEOUT: "30"},
            **env,
        )
        n = len(self.procs)
        with (
            open(os.path.join(self.dir, f"stdout{n}"), "w") as stdout,
            open(os.path.join(self.dir, f"stderr{n}"), "w") as stderr,
        ):
            proc = subprocess.Popen(
                [sys.executable, self.script, REPO, mode, out],
                cwd=self.dir,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        self.procs.append(proc)
        return proc

    def _log(self, proc: subprocess.Popen, stream: str = "stderr") -> str:
        with open(os.path.join(self.dir, f"{stream}{self.procs.index(proc)}")) as f:
            return f.read()

    def _finish(self, *procs: subprocess.Popen) -> None:
        for p in procs:
            rc = p.wait(timeout=WAIT_S)
            self.assertEqual(rc, 0, self._log(p)[-3000:])

    def _load(self, path: str) -> dict:
        with open(path) as f:
            return json.load(f)

    def _run_pair(self, env0: dict[str, str], env1: dict[str, str]) -> tuple[dict, str]:
        out = os.path.join(self.dir, "pair.json")
        self._finish(self._start("once", out, 2, **env0), self._start("once", out, 2, **env1))
        return self._load(out), out

    def _reference(self) -> dict:
        """The same program in one process with 4 devices (``initialize`` does nothing)."""
        out = os.path.join(self.dir, "single.json")
        self._finish(self._start("once", out, 4))
        result = self._load(out)
        self.assertEqual(result["processes"], 1)
        self.assertEqual(self._load(out + ".0")["lanes"], list(range(8)))
        return result

    def _check_equals_one_process(self, pair: dict, out: str) -> None:
        self.assertEqual(pair["processes"], 2)
        # Process 1 held lanes 4..7 of the batch, yet gathered all 8, like process 0.
        self.assertEqual(self._load(out + ".0")["lanes"], [0, 1, 2, 3])
        self.assertEqual(self._load(out + ".1")["lanes"], [4, 5, 6, 7])
        self.assertEqual(self._load(out + ".1")["w"], pair["w"])
        self.assertEqual(self._load(out + ".1")["lrs"], pair["lrs"])
        ref = self._reference()
        self.assertEqual(pair["lrs"], ref["lrs"])  # process 1's zeros were replaced
        # Bit for bit: the lanes never interact, so no cross-device sum reorders anything.
        np.testing.assert_array_equal(pair["w"], ref["w"])
        np.testing.assert_array_equal(pair["losses"], ref["losses"])

    def test_scorelab_variables_two_processes_equal_one_process(self):
        port = free_port()
        pair, out = self._run_pair(scorelab_env(0, port), scorelab_env(1, port))
        self._check_equals_one_process(pair, out)

    def test_fake_slurm_step_needs_no_flag(self):
        # JAX's Slurm detection serves on port 61440 + SLURM_JOB_ID % 4096: pick a job id
        # whose port is free (no JAX_COORDINATOR_PORT, no scorelab variable).
        job_id = free_port(61440, 65535) - 61440 + 4096 * 7
        pair, out = self._run_pair(slurm_env(0, job_id), slurm_env(1, job_id))
        self._check_equals_one_process(pair, out)

    def _start_loop_pair(self, mode: str, **env: str) -> list[subprocess.Popen]:
        port, out = free_port(), os.path.join(self.dir, "loop.json")
        procs = [self._start(mode, out, 2, **scorelab_env(i, port), **env) for i in (0, 1)]
        deadline = time.time() + WAIT_S
        while not all("ready" in self._log(p, "stdout") for p in procs):
            self.assertLess(time.time(), deadline, "the pair never got ready")
            for p in procs:
                self.assertIsNone(p.poll(), self._log(p)[-3000:])
            time.sleep(0.1)
        return procs

    def _assert_fails_soon(self, proc: subprocess.Popen, within_s: float, pattern: str) -> None:
        start = time.time()
        rc = proc.wait(timeout=WAIT_S)
        self.assertLess(time.time() - start, within_s)
        self.assertNotEqual(rc, 0)
        self.assertRegex(self._log(proc), pattern)

    def test_killed_coordinator_makes_the_other_process_fail(self):
        p0, p1 = self._start_loop_pair("loop", **{distributed.ENV_HEARTBEAT: "5"})
        p0.kill()
        self._assert_fails_soon(p1, 20, r"another task died|Connection (closed|reset) by peer")

    def test_hung_process_makes_the_other_fail_after_the_heartbeat_timeout(self):
        p0, p1 = self._start_loop_pair("loop", **{distributed.ENV_HEARTBEAT: "5"})
        p1.send_signal(signal.SIGSTOP)  # alive but silent: no socket is closed
        self._assert_fails_soon(p0, 20, r"another task died|heartbeat timeout")

    def test_exception_on_one_process_ends_both(self):
        # Without initialize's exception hook the raising process would wait in JAX's
        # shutdown barrier (300 s) while the other waits in a collective forever.
        p0, p1 = self._start_loop_pair("raise")
        self._assert_fails_soon(p1, 20, "a bug on process 1")
        self._assert_fails_soon(p0, 20, r"Gloo|another task died")
        self.assertEqual((p0.returncode, p1.returncode), (1, 1))


class SingleProcessTest(absltest.TestCase):
    """In this (pytest's) process: nothing is started, every helper is the identity."""

    def setUp(self):
        super().setUp()
        patcher = mock.patch.dict(os.environ, clean_env(), clear=True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_initialize_does_nothing_twice(self):
        self.assertFalse(distributed.initialize())
        self.assertFalse(distributed.initialize())
        self.assertFalse(jax.distributed.is_initialized())
        self.assertTrue(distributed.is_main())

    def test_one_process_or_one_slurm_task_is_not_distributed(self):
        self.assertFalse(distributed.initialize("127.0.0.1:1234", 1, 0))
        with mock.patch.dict(os.environ, {**slurm_env(0, 5), "SLURM_NTASKS": "1"}):
            self.assertFalse(distributed.initialize())
        partial = {k: v for k, v in slurm_env(0, 5).items() if k != "SLURM_STEP_NODELIST"}
        with mock.patch.dict(os.environ, partial):  # e.g. ssh into a node of an allocation
            self.assertFalse(distributed.initialize())
        with mock.patch.dict(os.environ, slurm_env(0, 5)):  # a 2-task step: found, not started
            self.assertTrue(distributed.requested())
        opt_out = {**slurm_env(0, 5), distributed.ENV_NUM_PROCESSES: "1"}
        with mock.patch.dict(os.environ, opt_out):  # e.g. python run in an sbatch script
            self.assertFalse(distributed.initialize())
        self.assertFalse(jax.distributed.is_initialized())

    def test_incomplete_or_bad_scorelab_variables_raise(self):
        cases = (
            ({distributed.ENV_COORDINATOR: "127.0.0.1:1234"}, "missing.*num_processes.*process"),
            ({distributed.ENV_NUM_PROCESSES: "two"}, "must be an integer"),
        )
        for env, message in cases:
            with (
                mock.patch.dict(os.environ, env),
                self.assertRaisesRegex(ValueError, message),
            ):
                distributed.initialize()

    def test_helpers_are_the_identity(self):
        mesh = distributed.global_mesh("trials")
        self.assertEqual(mesh.axis_names, ("trials",))
        self.assertEqual(list(mesh.devices), jax.devices())
        host = np.arange(2 * mesh.size * 3, dtype=np.float32).reshape(2 * mesh.size, 3)
        arr = distributed.global_array(host, mesh, PartitionSpec("trials"))
        self.assertEqual(arr.sharding.spec, PartitionSpec("trials"))
        tree = {"a": arr, "b": np.float32(2.0), "c": host[0]}
        for out in (distributed.gather(tree), distributed.broadcast_from_main(tree)):
            self.assertIsInstance(out["a"], np.ndarray)
            np.testing.assert_array_equal(out["a"], host)
            np.testing.assert_array_equal(out["b"], 2.0)
            np.testing.assert_array_equal(out["c"], host[0])
        self.assertEqual(distributed.broadcast_from_main(np.int64(2**40 + 3)), 2**40 + 3)
        with self.assertRaisesRegex(TypeError, "numeric arrays"):
            distributed.broadcast_from_main(np.array(["momentum"]))
        message = {"op": "stop", "rows": [{"lr": 0.1}]}
        self.assertIs(distributed.broadcast_json(message), message)
        distributed.barrier("nothing to wait for")
        distributed.check_same_on_all("anything", host, {"a": 1})
        self.assertFalse(distributed.requested())
        self.assertFalse(distributed.joined())


if __name__ == "__main__":
    absltest.main()
