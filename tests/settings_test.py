"""Tests for lib/settings.py: the Setup's checks, the hparams' ranges, reading a config.

The end-to-end checks (a bad config leaves the workdir untouched) are in train_test.
"""

import importlib
import inspect
import os

import jax
import numpy as np
from absl.testing import absltest, parameterized

from lib import settings, space, train, updates


class ValidateTest(parameterized.TestCase):
    dims = {"num_features": 4, "num_classes": 3}

    def test_validate_checks_traced_free_ranges(self):
        setup = settings.Setup(**self.dims)
        for name, value in (("mu", 1.0), ("dropout", 1.0), ("beta2", -0.1), ("eps", 0.0)):
            with self.assertRaisesRegex(ValueError, name):
                settings.validate(setup, {name: value})
        with self.assertRaisesRegex(ValueError, "unknown hyperparameters"):
            settings.validate(setup, {"lr": 0.1})

    def test_the_hparams_table_matches_the_update_rules(self):
        # Each minibatch rule reads its learning rate and its factory's keyword arguments;
        # lbfgs and newton read no learning rate, newton its damping.
        for name, rule in updates.RULES.items():
            reads = set(inspect.signature(rule).parameters) & set(settings.HPARAMS)
            self.assertEqual(reads | {"learning_rate"}, set(settings.OPTIMIZER_HPARAMS[name]), name)
        self.assertEqual(set(settings.OPTIMIZER_HPARAMS), set(settings.optimizers()))
        self.assertEqual(set(settings.SCHEDULE_HPARAMS), set(settings.SCHEDULES))
        setup = settings.Setup(**self.dims, optimizer="newton")
        self.assertIn("optimizers sgd", settings.unused_reason("learning_rate", setup))
        self.assertIsNone(settings.unused_reason("damping", setup))
        self.assertIsNone(settings.unused_reason("reg", setup))

    def test_traced_hparams_are_not_checked(self):
        setup = settings.Setup(**self.dims)
        checked = jax.jit(lambda mu: (settings.validate(setup, {"mu": mu}), mu)[1])
        self.assertEqual(float(checked(2.0)), 2.0)  # out of range, but a tracer at check time
        with self.assertRaisesRegex(ValueError, r"mu=2.0 is out of range.*\[0, 1\)"):
            settings.validate(setup, {"mu": 2.0})

    def test_sizes_and_full_batch_rules(self):
        with self.assertRaisesRegex(ValueError, r"batch_size 200 is larger than the 50"):
            settings.validate(settings.Setup(**self.dims), {}, num_train=50)
        settings.validate(settings.Setup(**self.dims, optimizer="lbfgs"), {}, num_train=50)
        big = settings.Setup(100, 50, optimizer="newton")  # 5050 parameters
        with self.assertRaisesRegex(ValueError, r"5050x5050 Hessian.*use optimizer lbfgs"):
            settings.validate(big, {})
        net = settings.Setup(**self.dims, model="two_layer", optimizer="newton")
        with self.assertRaisesRegex(ValueError, r"--config.model.dropout=0"):
            settings.validate(net, {"dropout": 0.5})

    @parameterized.parameters("linear", "two_layer")
    def test_num_params_counts_the_initialised_params(self, model):
        setup = settings.Setup(7, 3, model=model, hidden=5)
        params = train.init_params(jax.random.key(0), setup)
        self.assertEqual(settings.num_params(setup), sum(np.size(p) for p in params.values()))

    def test_optimizers_are_the_rules_and_full_batch_methods(self):
        self.assertEqual(set(settings.optimizers()), {*settings.FULL_BATCH, *updates.RULES})


class ConfigTest(absltest.TestCase):
    def test_every_hparam_reads_from_its_config_path(self):
        self.assertEqual(set(settings.HPARAMS), set(settings.DEFAULT_HPARAMS))
        config = importlib.import_module("configs.digits_softmax").get_config()
        for i, name in enumerate(settings.HPARAMS):
            settings.set_field(config, settings.CONFIG_PATHS[name], 0.01 * (i + 1))
        got = settings.hparams_from_config(config)
        self.assertEqual(got, {n: 0.01 * (i + 1) for i, n in enumerate(settings.HPARAMS)})

    def test_defaults_where_a_config_leaves_a_field_out(self):
        config = importlib.import_module("configs.digits_softmax").get_config()
        got = settings.hparams_from_config(config)
        self.assertEqual(got["mu"], config.optimizer.get("mu", settings.DEFAULT_HPARAMS["mu"]))
        self.assertEqual(got["damping"], settings.DEFAULT_HPARAMS["damping"])
        self.assertEqual(got["learning_rate"], config.optimizer.learning_rate)

    def test_float32_hparams_fill_the_defaults(self):
        hp = settings.float32_hparams({"learning_rate": 0.5, "mu": 0.25})
        self.assertEqual(set(hp), set(settings.HPARAMS))
        self.assertEqual({v.dtype for v in hp.values()}, {np.dtype(np.float32)})
        self.assertEqual((float(hp["learning_rate"]), float(hp["mu"])), (0.5, 0.25))
        self.assertEqual(float(hp["beta2"]), np.float32(settings.DEFAULT_HPARAMS["beta2"]))

    def test_the_seed_leaves_the_split_alone_and_split_seed_draws_another(self):
        def load(seed, split_seed, name="digits_softmax"):
            config = importlib.import_module(f"configs.{name}").get_config()
            config.seed, config.dataset.split_seed = seed, split_seed
            config.dataset.num_train = 200
            return settings.load_data(config)

        for name in ("digits_softmax", "spiral_softmax"):
            a, b, c = load(0, 0, name), load(1, 0, name), load(0, 1, name)
            for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
                np.testing.assert_array_equal(getattr(a, split), getattr(b, split), split)
            self.assertFalse(np.array_equal(a.y_val, c.y_val), name)

    def test_setup_from_config(self):
        config = importlib.import_module("configs.digits_svm").get_config()
        setup = settings.setup_from_config(config, 64, 10)
        self.assertEqual(
            (setup.num_features, setup.num_classes, setup.loss, setup.batch_size),
            (64, 10, "hinge", config.train.batch_size),
        )
        self.assertEqual(setup.num_epochs, config.train.num_epochs)
        settings.validate(setup, settings.hparams_from_config(config))


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class EveryConfigTest(parameterized.TestCase):
    """Every config file builds a valid run (and, for a sweep, a valid search space)."""

    @parameterized.parameters(
        sorted(
            n[: -len(".py")]
            for n in os.listdir(CONFIGS)
            if n.endswith(".py") and n not in ("__init__.py", "common.py")
        )
    )
    def test_config_is_valid(self, name):
        config = importlib.import_module(f"configs.{name}").get_config()
        setup = settings.setup_from_config(config, 3072, 10)
        settings.validate(setup, settings.hparams_from_config(config))
        if "search" in config and len(config.search.space):
            s = config.search
            stages = space.stages_from_config(
                s.stages, int(s.num_trials), int(config.train.num_epochs)
            )
            space.check_space(space.space_from_config(s.space), setup, stages)
        elif "search" in config:  # configs/tune.py: derived from the data (autospace_test)
            self.assertEqual((config.search.stages, len(config.search.space)), ("", 0))


if __name__ == "__main__":
    absltest.main()
