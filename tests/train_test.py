"""End-to-end tests of lib/train.py: every config shrunk, resume, determinism, bad input."""

import glob
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from lib import checkpoints, data, epoch, interrupt, metrics, settings, train
from tests.fixtures import write_cifar, write_mnist

WORKDIR_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png")
EPOCH_KEYS = {
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_accuracy",
    "val_loss",
    "learning_rate",
    "update_ratio",
    "seconds",
}


def _config(name, **overrides):
    """configs/<name>.py shrunk to a couple of epochs, with dotted-key overrides."""
    config = importlib.import_module(f"configs.{name}").get_config()
    config.train.num_epochs = 2
    config.train.checkpoint_every = 1  # (the default policy has a test of its own)
    for key, value in overrides.items():
        settings.set_field(config, key, value)
    return config


def _snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    out = {}
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class TmpTestCase(parameterized.TestCase):
    def tmpdir(self):
        path = tempfile.mkdtemp(prefix="train_test_")
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path


class ConfigsTest(TmpTestCase):
    """Each config in configs/ trains (shrunk) and writes the whole workdir contract."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data_root = tempfile.mkdtemp(prefix="train_test_data_")
        write_cifar(
            os.path.join(cls.data_root, "cifar"), bytes_keys=True, per_batch=40, num_test=20
        )
        os.makedirs(os.path.join(cls.data_root, "mnist"))
        write_mnist(os.path.join(cls.data_root, "mnist"), gz=True, n_train=120, n_test=30)
        rng = np.random.default_rng(0)  # own data: 3 classes of 5 features, not images
        y = np.arange(150) % 3
        x = rng.normal(size=(150, 5)) + 2.0 * np.eye(3, 5)[y]
        np.savez(os.path.join(cls.data_root, "own.npz"), x_train=x, y_train=y)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.data_root, ignore_errors=True)
        super().tearDownClass()

    @parameterized.parameters(
        ("digits_softmax", {}),
        ("digits_svm", {}),
        ("spiral_softmax", {}),
        ("spiral_two_layer", {"model.hidden": 16}),
        ("cifar10_softmax", {"dataset.data_dir": "cifar", "train.batch_size": 20}),
        ("cifar10_svm", {"dataset.data_dir": "cifar", "train.batch_size": 20}),
        (
            "cifar10_two_layer",
            {"dataset.data_dir": "cifar", "train.batch_size": 20, "model.hidden": 8},
        ),
        ("mnist_softmax", {"dataset.data_dir": "mnist", "train.batch_size": 20}),
        ("npz_softmax", {"dataset.data_dir": "own.npz"}),
    )
    def test_config_writes_the_workdir(self, name, overrides):
        if "dataset.data_dir" in overrides:
            overrides = {
                **overrides,
                "dataset.data_dir": os.path.join(self.data_root, overrides["dataset.data_dir"]),
            }
        config = _config(name, **overrides)
        workdir = self.tmpdir()
        summary = train.train_and_evaluate(config, workdir)
        for fname in WORKDIR_FILES:
            self.assertTrue(os.path.exists(os.path.join(workdir, fname)), fname)
        # The class templates, for a linear model of images only (not the spiral's points
        # or the .npz's feature vectors).
        templates = config.model.name == "linear" and name not in ("spiral_softmax", "npz_softmax")
        self.assertEqual(os.path.exists(os.path.join(workdir, "templates.png")), templates)
        first_layer = config.model.name == "two_layer" and name != "spiral_two_layer"
        self.assertEqual(os.path.exists(os.path.join(workdir, "first_layer.png")), first_layer)
        self.assertEqual(checkpoints.steps(os.path.join(workdir, "checkpoints")), [1, 2])
        records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        self.assertEqual([r["epoch"] for r in records], [1, 2])
        self.assertEqual(set(records[0]), EPOCH_KEYS)
        for key in ("train_accuracy", "val_accuracy", "test_accuracy", "seconds", "final_loss"):
            self.assertIn(key, summary)
        self.assertEqual(metrics.read_json(os.path.join(workdir, "summary.json")), summary)
        self.assertEqual(metrics.read_json(os.path.join(workdir, "config.json")), config.to_dict())
        self.assertTrue(np.isfinite(summary["final_loss"]))


class EveryOptimizerTest(TmpTestCase):
    """train_and_evaluate (jitted, donated epoch) with every optimizer, and with EMA."""

    @parameterized.parameters(*settings.optimizers())
    def test_trains_two_epochs(self, optimizer):
        config = _config(
            "digits_softmax",
            **{
                "optimizer.name": optimizer,
                "dataset.num_train": 200,
                "train.batch_size": 50,
                "train.ema_decay": 0.5,
            },
        )
        summary = train.train_and_evaluate(config, self.tmpdir())
        self.assertGreater(summary["val_accuracy"], 0.5)
        self.assertIn("val_accuracy", summary["ema"])


class DefaultConfigTest(TmpTestCase):
    def test_digits_softmax_learns(self):
        """The default job (full epochs) beats 0.93 test accuracy, as the README says."""
        config = _config("digits_softmax")
        config.train.num_epochs = (
            importlib.import_module("configs.digits_softmax").get_config().train.num_epochs
        )
        summary = train.train_and_evaluate(config, self.tmpdir())
        self.assertGreaterEqual(summary["test_accuracy"], 0.93)

    def test_spiral_linear_vs_two_layer(self):
        """The notes' point: a linear model gets about half the spiral, a ReLU net nearly all."""
        results = {}
        for name in ("spiral_softmax", "spiral_two_layer"):
            config = importlib.import_module(f"configs.{name}").get_config()
            ds = settings.load_data(config)
            setup = settings.setup_from_config(config, ds.num_features, ds.num_classes)
            hparams = settings.hparams_from_config(config)
            state, _ = jax.jit(train.fit, static_argnums=3)(
                jax.random.key(config.seed), hparams, train.to_device(ds), setup
            )
            results[name] = float(train.accuracy(state.params, ds.x_train, ds.y_train, setup))
        self.assertBetween(results["spiral_softmax"], 0.40, 0.60)
        self.assertGreaterEqual(results["spiral_two_layer"], 0.95)


class ResumeTest(TmpTestCase):
    def test_a_lost_metrics_file_resumes_from_the_last_checkpoint(self):
        workdir = self.tmpdir()
        train.train_and_evaluate(_config("digits_softmax"), workdir)
        os.remove(os.path.join(workdir, "metrics.jsonl"))
        train.train_and_evaluate(_config("digits_softmax", **{"train.num_epochs": 3}), workdir)
        records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        self.assertEqual([r["epoch"] for r in records], [3])  # epochs 1-2: the checkpoint's
        self.assertEqual(checkpoints.steps(os.path.join(workdir, "checkpoints")), [1, 2, 3])

    @parameterized.named_parameters(  # (the linear model's path: interrupt_test)
        (
            "two_layer_adam_dropout_step_ema",
            "digits_softmax",
            {
                "model.name": "two_layer",
                "model.hidden": 16,
                "model.dropout": 0.3,
                "optimizer.name": "adam",
                "optimizer.learning_rate": 1e-2,
                "schedule.name": "step",
                "schedule.every": 1,
                "train.ema_decay": 0.9,
            },
        ),
        ("lbfgs", "digits_softmax", {"optimizer.name": "lbfgs"}),
    )
    def test_interrupted_run_resumes_to_the_same_result(self, name, overrides):
        config = _config(name, **{"train.num_epochs": 4, **overrides})
        full = self.tmpdir()
        train.train_and_evaluate(config, full)

        interrupted = self.tmpdir()
        real_save = checkpoints.save

        def save_then_stop(directory, step, tree):
            real_save(directory, step, tree)
            if step == 2:
                raise KeyboardInterrupt("simulated interruption after epoch 2")

        with mock.patch.object(checkpoints, "save", save_then_stop):
            with self.assertRaises(KeyboardInterrupt):
                train.train_and_evaluate(config, interrupted)
        self.assertEqual(checkpoints.steps(os.path.join(interrupted, "checkpoints")), [1, 2])
        train.train_and_evaluate(config, interrupted)

        records = metrics.read_jsonl(os.path.join(interrupted, "metrics.jsonl"))
        self.assertEqual([r["epoch"] for r in records], [1, 2, 3, 4])  # none repeated
        self.assertEqual(
            _without_seconds(records),
            _without_seconds(metrics.read_jsonl(os.path.join(full, "metrics.jsonl"))),
        )
        restored = [
            checkpoints.restore(os.path.join(d, "checkpoints")) for d in (full, interrupted)
        ]
        chex.assert_trees_all_equal(*restored)  # params, optimizer state, EMA, key, epoch

    def test_every_few_epochs_the_latest_kept_and_a_stop_saves_its_epoch(self):
        config = _config(
            "digits_softmax",
            **{"train.num_epochs": 7, "train.checkpoint_every": 3, "train.keep_checkpoints": 2},
        )
        full = self.tmpdir()
        train.train_and_evaluate(config, full)
        self.assertEqual(checkpoints.steps(os.path.join(full, "checkpoints")), [6, 7])
        # A signal during epoch 4: the run saves epoch 4 before it stops, and resumes there.
        stopped = self.tmpdir()
        real = metrics.log_progress

        def signal_during_4(record, num_epochs):
            real(record, num_epochs)
            if record["epoch"] == 4:
                os.kill(os.getpid(), signal.SIGINT)

        with interrupt.deferred(), mock.patch.object(metrics, "log_progress", signal_during_4):
            with self.assertRaises(interrupt.Interrupted):
                train.train_and_evaluate(config, stopped)
        self.assertEqual(checkpoints.steps(os.path.join(stopped, "checkpoints")), [3, 4])
        train.train_and_evaluate(config, stopped)
        self.assertEqual(
            *(
                _without_seconds(metrics.read_jsonl(os.path.join(d, "metrics.jsonl")))
                for d in (full, stopped)
            )
        )
        chex.assert_trees_all_equal(
            *(checkpoints.restore(os.path.join(d, "checkpoints")) for d in (full, stopped))
        )

    def test_finished_run_only_reevaluates(self):
        config = _config("digits_softmax")
        workdir = self.tmpdir()
        first = train.train_and_evaluate(config, workdir)
        lines = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        second = train.train_and_evaluate(config, workdir)
        self.assertEqual(metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")), lines)
        self.assertGreater(first.pop("wall_seconds"), first["seconds"])  # this call's own
        second.pop("wall_seconds")
        self.assertEqual(first, second)

    def test_more_epochs_extends_the_run(self):
        workdir = self.tmpdir()
        train.train_and_evaluate(_config("digits_softmax"), workdir)
        train.train_and_evaluate(_config("digits_softmax", **{"train.num_epochs": 3}), workdir)
        records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        self.assertEqual([r["epoch"] for r in records], [1, 2, 3])
        # Fewer epochs than the workdir holds: refused, never the longer model reported.
        before = _snapshot(workdir)
        with self.assertRaisesRegex(ValueError, "trained for 3 epochs.*num_epochs=3"):
            train.train_and_evaluate(_config("digits_softmax"), workdir)
        self.assertEqual(_snapshot(workdir), before)

    def test_torn_metrics_past_the_checkpoint_are_recomputed(self):
        config = _config("digits_softmax")
        workdir = self.tmpdir()
        train.train_and_evaluate(config, workdir)
        path = os.path.join(workdir, "metrics.jsonl")
        expected = metrics.read_jsonl(path)
        shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))
        with open(path, "a") as f:
            f.write('{"epoch": 2, "train_lo')  # a line torn by a crash
        train.train_and_evaluate(config, workdir)
        self.assertEqual(_without_seconds(metrics.read_jsonl(path)), _without_seconds(expected))


# Runs with 4 forced CPU devices: the digits run (1076 rows, 52 a batch: both split evenly)
# one device, data parallel, and data parallel with the rows split; prints their metrics and
# the rows each device holds.
_FOUR_DEVICES = """
import json, sys, tempfile
import jax
from configs import digits_softmax
from lib import distributed, settings, train
assert jax.device_count() == 4, jax.devices()
out = {}
for name, overrides in (
    ("one", {}),
    ("parallel", {"train.data_parallel": True}),
    ("sharded", {"train.data_parallel": True, "train.shard_data": True}),
):
    config = digits_softmax.get_config()
    for key, value in {"train.num_epochs": 3, "train.batch_size": 52,
                       "dataset.num_train": 1076, **overrides}.items():
        settings.set_field(config, key, value)
    workdir = tempfile.mkdtemp()
    out[name] = train.train_and_evaluate(config, workdir)
    out[name]["records"] = open(workdir + "/metrics.jsonl").read().splitlines()
run = train.read_config(config)
data = train.to_device(run.dataset, distributed.global_mesh("batch"), "batch")
out["rows_per_device"] = sorted({s.data.shape[0] for s in data.x_train.raw.addressable_shards})
print(json.dumps(out))
"""


@pytest.mark.slow
class DataParallelTest(absltest.TestCase):
    def test_four_devices_train_as_one_with_the_rows_split_or_not(self):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        out = subprocess.run(
            [sys.executable, "-c", _FOUR_DEVICES],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            env={**env, "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        runs = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(runs["rows_per_device"], [269])  # 1076 / 4: each holds its share
        self.assertEqual([runs[n]["devices"] for n in ("one", "parallel", "sharded")], [1, 4, 4])
        expected = [json.loads(r) for r in runs["one"]["records"]]
        for name in ("parallel", "sharded"):
            got = [json.loads(r) for r in runs[name]["records"]]
            for key in expected[0]:
                if key != "seconds":  # float rounding apart, what one device computed
                    np.testing.assert_allclose(
                        [r[key] for r in got], [r[key] for r in expected], rtol=1e-5, err_msg=key
                    )
            for key in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
                self.assertAlmostEqual(runs[name][key], runs["one"][key], delta=1e-5)


class DeterminismTest(TmpTestCase):
    def test_same_seed_same_metrics_bitwise(self):
        config = _config("spiral_two_layer", **{"model.hidden": 16, "model.dropout": 0.2})
        runs = []
        for _ in range(2):
            workdir = self.tmpdir()
            train.train_and_evaluate(config, workdir)
            runs.append(
                _without_seconds(metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")))
            )
        self.assertEqual(runs[0], runs[1])

    def test_other_seed_other_metrics(self):
        a, b = self.tmpdir(), self.tmpdir()
        train.train_and_evaluate(_config("spiral_two_layer", **{"model.hidden": 16}), a)
        train.train_and_evaluate(_config("spiral_two_layer", **{"model.hidden": 16, "seed": 1}), b)
        self.assertNotEqual(
            _without_seconds(metrics.read_jsonl(os.path.join(a, "metrics.jsonl"))),
            _without_seconds(metrics.read_jsonl(os.path.join(b, "metrics.jsonl"))),
        )


class BadInputTest(TmpTestCase):
    """Every bad input raises a clear error and leaves an existing workdir as it was."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.mkdtemp(prefix="train_test_bad_")
        train.train_and_evaluate(_config("digits_softmax"), cls.workdir)
        cls.before = _snapshot(cls.workdir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    @parameterized.named_parameters(
        (
            "missing_data_dir",
            {"dataset.name": "cifar10", "dataset.data_dir": "/nonexistent/cifar"},
            FileNotFoundError,
            r"data_batch_1",
        ),
        ("no_data_dir", {"dataset.name": "mnist"}, ValueError, r"data_dir"),
        ("dataset_name", {"dataset.name": "imagenet"}, ValueError, r"digits.*spiral|cifar10"),
        ("model_name", {"model.name": "resnet"}, ValueError, r"linear, two_layer"),
        ("loss_name", {"loss.name": "l1"}, ValueError, r"hinge, softmax"),
        ("optimizer_name", {"optimizer.name": "adamw"}, ValueError, r"adagrad, adam, lbfgs"),
        ("schedule_name", {"schedule.name": "cosine"}, ValueError, r"constant, exponential"),
        ("batch_size", {"train.batch_size": 5000}, ValueError, r"batch_size 5000 .*at most 1079"),
        ("negative_reg", {"loss.reg": -1.0}, ValueError, r"reg=-1.0 is out of range"),
        ("zero_learning_rate", {"optimizer.learning_rate": 0.0}, ValueError, r"learning_rate"),
        ("other_config", {"loss.name": "hinge"}, ValueError, r"different config.*loss.name"),
        ("zero_epochs", {"train.num_epochs": 0}, ValueError, r"--config.train.num_epochs"),
        (
            "zero_train_eval_size",
            {"train.train_eval_size": 0},
            ValueError,
            r"--config.train.train_eval_size",
        ),
        ("negative_margin", {"loss.margin": -1.0}, ValueError, r"--config.loss.margin"),
        ("mu_one", {"optimizer.mu": 1.0}, ValueError, r"--config.optimizer.mu .*\[0, 1\)"),
        (
            "full_batch_dropout",
            {"optimizer.name": "lbfgs", "model.name": "two_layer", "model.dropout": 0.5},
            ValueError,
            r"--config.model.dropout=0",
        ),
        (
            "data_parallel_full_batch",
            {"train.data_parallel": True, "optimizer.name": "lbfgs"},
            ValueError,
            r"optimizer 'lbfgs' takes full-batch steps: set --config.train.data_parallel=False",
        ),
    )
    def test_error_leaves_workdir_untouched(self, overrides, error, pattern):
        with self.assertRaisesRegex(error, pattern):
            train.train_and_evaluate(_config("digits_softmax", **overrides), self.workdir)
        self.assertEqual(_snapshot(self.workdir), self.before)

    def test_data_parallel_checks_the_processes_and_devices(self):
        run = train.read_config(_config("digits_softmax", **{"train.batch_size": 50}))
        parallel = run._replace(data_parallel=True)
        sharded = parallel._replace(shard_data=True)
        for ok in (run, parallel, sharded):  # one device here
            train.check_data_parallel(ok)
        with mock.patch.object(jax, "process_count", return_value=2):
            with self.assertRaisesRegex(
                ValueError,
                r"a training run launched as 2 processes splits each minibatch over every "
                r"process's devices: set --config.train.data_parallel=True",
            ):
                train.check_data_parallel(run)
        with mock.patch.object(jax, "device_count", return_value=5):  # 1079 rows, 50 a batch
            train.check_data_parallel(run)
            train.check_data_parallel(parallel)
            with self.assertRaisesRegex(
                ValueError,
                r"the 1079 training rows evenly over the 5 devices: set "
                r"--config.dataset.num_train to a multiple of 5",
            ):
                train.check_data_parallel(sharded)
        with (
            mock.patch.object(jax, "device_count", return_value=3),
            self.assertRaisesRegex(
                ValueError,
                r"batch_size=50 evenly over the 3 devices: set --config.train.batch_size to a "
                r"multiple of 3",
            ),
        ):
            train.check_data_parallel(parallel)
        with self.assertRaisesRegex(ValueError, r"--config.train.data_parallel=True too"):
            train.check_data_parallel(run._replace(shard_data=True))

    def test_divergence_names_epoch_and_hparams(self):
        workdir = self.tmpdir()
        config = _config("digits_softmax", **{"optimizer.learning_rate": 1e30})
        with self.assertRaisesRegex(FloatingPointError, r"epoch 1.*learning_rate=1e\+30"):
            train.train_and_evaluate(config, workdir)
        self.assertEqual(metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")), [])
        # Nothing was trained: the same workdir takes the corrected config.
        train.train_and_evaluate(_config("digits_softmax"), workdir)
        self.assertEqual(checkpoints.steps(os.path.join(workdir, "checkpoints")), [1, 2])

    def test_nan_weights_after_an_epochs_last_step_are_never_checkpointed(self):
        # The epoch's training loss is computed before each step, so a step that leaves NaN
        # weights at the end of epoch 2 shows only in the end-of-epoch checks.
        real = train.train_epoch

        def last_step_nan(state, *args, **kwargs):
            state, m = real(state, *args, **kwargs)
            poison = lambda p: jnp.where(state.epoch >= 2, jnp.nan, p)
            return state._replace(params=jax.tree.map(poison, state.params)), m

        workdir = self.tmpdir()
        with mock.patch.object(epoch, "train_epoch", last_step_nan):  # run_epoch calls it
            with self.assertRaisesRegex(FloatingPointError, r"diverged at epoch 2.*val loss nan"):
                train.train_and_evaluate(_config("digits_softmax"), workdir)
        self.assertEqual(checkpoints.steps(os.path.join(workdir, "checkpoints")), [1])
        self.assertTrue(train.finite({"train_loss": 1.0, "val_loss": 2.0, "update_ratio": 0.1}))
        self.assertFalse(train.finite({"train_loss": 1.0, "val_loss": 2.0, "update_ratio": np.nan}))


class PermutationTest(parameterized.TestCase):
    @parameterized.parameters(1, 2, 7, 1000, 49000)
    def test_is_a_permutation(self, n):
        perm = np.asarray(train.permutation(jax.random.key(n), n))
        self.assertEqual(perm.dtype, np.int32)
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))

    def test_uniform(self):
        """Where each of 8 items lands, over 4000 keys: chi-square against uniform."""
        n, draws = 8, 4000
        perms = np.asarray(
            jax.vmap(lambda k: train.permutation(k, n))(jax.random.split(jax.random.key(0), draws))
        )
        counts = np.stack([(perms == i).sum(0) for i in range(n)])  # item x position
        expected = draws / n
        chi2 = ((counts - expected) ** 2 / expected).sum()
        self.assertLess(chi2, 100.0)  # 49 degrees of freedom: p(chi2 > 100) < 3e-5
        self.assertFalse(np.all(perms == np.arange(n)))
        # Pairs of positions too: a sort with ties broken by index could favour order.
        above = (perms[:, 0] < perms[:, 1]).mean()
        self.assertBetween(above, 0.46, 0.54)


class FitTest(parameterized.TestCase):
    """``fit`` with every update rule and schedule, on the (tiny) digits data."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ds = data.load("digits", scale=1 / 16, num_train=200)
        cls.data = train.to_device(ds)
        cls.dims = {"num_features": ds.num_features, "num_classes": ds.num_classes}

    @parameterized.product(
        optimizer=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "lbfgs", "newton"),
    )
    def test_every_optimizer_learns(self, optimizer):
        """From ln(10) at the tiny initial weights to under half of it, and > 0.8 accuracy."""
        lr = {
            "sgd": 0.5,
            "momentum": 0.05,
            "nesterov": 0.05,
            "adagrad": 0.1,
            "rmsprop": 1e-2,
            "adam": 1e-2,
        }.get(optimizer, 1.0)
        setup = settings.Setup(**self.dims, optimizer=optimizer, num_epochs=8, batch_size=50)
        _, history = jax.jit(train.fit, static_argnums=3)(
            jax.random.key(0), {"learning_rate": lr, "reg": 1e-3}, self.data, setup
        )
        loss = np.asarray(history["train_loss"])
        self.assertTrue(np.all(np.isfinite(loss)))
        self.assertLess(loss[-1], 0.5 * np.log(10))
        self.assertGreater(history["val_accuracy"][-1], 0.8)

    @parameterized.parameters(
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ("step", [0.1, 0.1, 0.05, 0.05]),  # halved every 2 epochs
        ("exponential", list(0.1 * np.exp(-0.5 * (np.arange(1, 5) - 0.25)))),
        ("inverse_time", list(0.1 / (1 + 0.5 * (np.arange(1, 5) - 0.25)))),
    )
    def test_schedules_in_epochs(self, schedule, expected):
        """The logged rate is the one of each epoch's last update (4 updates per epoch)."""
        setup = settings.Setup(
            **self.dims, schedule=schedule, schedule_every=2, num_epochs=4, batch_size=50
        )
        _, history = jax.jit(train.fit, static_argnums=3)(
            jax.random.key(0),
            {"learning_rate": 0.1, "lr_decay": 0.5, "lr_k": 0.5},
            self.data,
            setup,
        )
        np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)

    def test_one_compiled_epoch_serves_every_learning_rate(self):
        setup = settings.Setup(**self.dims, optimizer="momentum", num_epochs=1, batch_size=50)

        def run_epoch(state, hparams, dataset):
            return train.run_epoch(state, hparams, dataset, setup)

        epoch = jax.jit(chex.assert_max_traces(run_epoch, n=1))
        state = train.init_state(jax.random.key(0), settings.DEFAULT_HPARAMS, setup, 200)
        for lr in (1e-3, 1e-2, 1e-1):
            hp = {
                k: jnp.float32(v)
                for k, v in {**settings.DEFAULT_HPARAMS, "learning_rate": lr}.items()
            }
            epoch(state, hp, self.data)
        chex.clear_trace_counter()

    def test_vmapped_fit_equals_single_runs(self):
        setup = settings.Setup(
            **self.dims, model="two_layer", hidden=8, optimizer="adam", num_epochs=2, batch_size=50
        )
        lrs = jnp.array([1e-3, 3e-3, 1e-2])
        keys = jax.random.split(jax.random.key(1), 3)
        hp = {"learning_rate": lrs, "dropout": jnp.array([0.0, 0.3, 0.5])}
        states, hist = jax.jit(jax.vmap(train.fit, in_axes=(0, 0, None, None)), static_argnums=3)(
            keys, hp, self.data, setup
        )
        for i in range(3):
            state, h = jax.jit(train.fit, static_argnums=3)(
                keys[i], {k: v[i] for k, v in hp.items()}, self.data, setup
            )
            chex.assert_trees_all_close(
                state.params, jax.tree.map(lambda a: a[i], states.params), rtol=1e-5, atol=1e-6
            )
            np.testing.assert_allclose(h["val_accuracy"], hist["val_accuracy"][i])

    @parameterized.parameters("momentum", "lbfgs")
    def test_pixels_train_as_the_float_rows_bitwise(self, optimizer):
        """Training on uint8 pixels (gathered, then made float) is training on the rows."""
        ds = data.load("digits", scale=1 / 17, num_train=200)  # 1/17: rounding matters
        pixels = train.to_device(ds)
        self.assertIsInstance(pixels.x_train, data.Pixels)  # digits are pixels
        floats = pixels._replace(x_train=jnp.asarray(ds.x_train))
        setup = settings.Setup(**self.dims, optimizer=optimizer, num_epochs=2, batch_size=50)
        fit = jax.jit(train.fit, static_argnums=3)
        hp = {"learning_rate": 0.05, "reg": 1e-3}
        got = fit(jax.random.key(0), hp, pixels, setup)
        want = fit(jax.random.key(0), hp, floats, setup)
        self.assertGreater(got[1]["train_accuracy"][-1], 0.5)  # it trained
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_array_equal(a, b)

    @parameterized.parameters("softmax", "hinge")
    def test_row_blocks_compute_the_same_objective(self, loss):
        """Scores in row blocks (train.ROW_BLOCKS): the same loss and gradient as one block."""
        setup = settings.Setup(**self.dims, loss=loss)
        kw, kb = jax.random.split(jax.random.key(3))
        params = {  # scores of order 1, so a block out of place would change the loss
            "W": 0.1 * jax.random.normal(kw, (self.dims["num_classes"], self.dims["num_features"])),
            "b": 0.1 * jax.random.normal(kb, (self.dims["num_classes"],)),
        }
        x, y = data.rows(self.data.x_train), self.data.y_train  # 200 rows
        hp = {"reg": jnp.float32(1e-2)}
        value_and_grad = jax.jit(
            jax.value_and_grad(train.objective), static_argnames=("setup", "row_blocks")
        )
        want = value_and_grad(params, x, y, hp, setup)
        for blocks in (2, 4, 8):
            got = value_and_grad(params, x, y, hp, setup, row_blocks=blocks)
            chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)

        def products(n, blocks):
            jaxpr = jax.make_jaxpr(
                lambda p: train.objective(p, x[:n], y[:n], hp, setup, row_blocks=blocks)
            )(params)
            return sum(e.primitive.name == "dot_general" for e in jaxpr.eqns)

        self.assertEqual(products(200, 2), 2)
        self.assertEqual(products(199, 2), 1)  # rows that do not divide evenly: one block

    def test_row_blocks_train_as_one_block(self):
        """A single run's epochs on pixels (2 row blocks by default) train as with 1 block."""
        self.assertIsInstance(self.data.x_train, data.Pixels)
        setup = settings.Setup(**self.dims, optimizer="momentum", batch_size=50)
        epoch = jax.jit(train.run_epoch, static_argnames=("setup", "row_blocks"))
        hp = {**settings.DEFAULT_HPARAMS, "learning_rate": 0.05, "reg": 1e-3}
        runs = {}
        for blocks in (train.ROW_BLOCKS, 1):
            state = train.init_state(jax.random.key(0), hp, setup, 200)
            for _ in range(3):
                state, m = epoch(state, hp, self.data, setup=setup, row_blocks=blocks)
            runs[blocks] = (state.params, m)
        self.assertGreater(train.ROW_BLOCKS, 1)
        self.assertGreater(runs[1][1]["train_accuracy"], 0.5)  # it trained
        chex.assert_trees_all_close(runs[train.ROW_BLOCKS], runs[1], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    absltest.main()


# A toy update rule and its one registry entry, run in a fresh process through the command
# line exactly as a user's `python -m experiments.train` would run it.
_SIGN_SGD = """
import runpy, sys
import jax, jax.numpy as jnp
from lib import updates

def sign_sgd(learning_rate):  # x += -lr * sign(dx)
    print("sign_sgd built")
    def apply(params, state, grads):
        lr = learning_rate(state.count)
        new = jax.tree.map(lambda x, g: x - lr * jnp.sign(g), params, grads)
        return new, updates.CountState(state.count + 1)
    return updates.UpdateRule(lambda p: updates.CountState(jnp.zeros([], jnp.int32)), apply)

updates.OPTIMIZERS["sign_sgd"] = updates.Optimizer(sign_sgd, ("learning_rate",))
sys.argv = ["train", *sys.argv[1:]]
runpy.run_module("experiments.train", run_name="__main__")
"""


class RegistryTest(TmpTestCase):
    def test_a_rule_added_as_one_registry_entry_trains_through_experiments_train(self):
        workdir = self.tmpdir()
        flags = ["--config=configs/digits_softmax.py", f"--workdir={workdir}"]
        flags += ["--config.optimizer.name=sign_sgd", "--config.optimizer.learning_rate=1e-3"]
        flags += ["--config.train.num_epochs=3"]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(
            [sys.executable, "-c", _SIGN_SGD, *flags],
            check=False,
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "SCORELAB_XLA_CACHE": ""},
        )
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        self.assertIn("sign_sgd built", out.stdout)
        summary = metrics.read_json(os.path.join(workdir, "summary.json"))
        self.assertGreater(summary["val_accuracy"], 0.5)  # it learned (chance: 0.1)
        records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        np.testing.assert_allclose([r["learning_rate"] for r in records], [1e-3] * 3, rtol=1e-6)
