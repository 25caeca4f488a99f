"""Tests for lib.members: the four sources of ensemble members, sweep trials, bad input;
seeds trained sharded (``sharding.fit_split``) equal a plain vmap of ``fit``, padded or not.

Training compiles dominate the cost, so every test that trains uses the same shrunk digits
config (linear softmax, plain SGD, one full-batch step per epoch, 3 epochs, 2 members):
one vmapped ``fit`` program over seeds and one over trials serve all of them (and
tests/ensemble_test.py, which imports the config from here).
"""

import csv
import functools
import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from configs import digits_ensemble, digits_sweep
from lib import checkpoints, ensemble, members, search, settings, sharding, train

LR, REG, DECAY, EPOCHS, NUM_TRAIN = 0.5, 1e-3, 0.9, 3, 100


def shrunk_config(**ensemble_fields):
    """digits_ensemble shrunk to a linear model: 100 training rows, full-batch SGD, 3 epochs,
    EMA kept, 2 members (the numpy references below are of the linear model)."""
    c = digits_ensemble.get_config()
    c.model.name = "linear"
    c.dataset.num_train = NUM_TRAIN
    c.train.batch_size = NUM_TRAIN  # one step per epoch: the minibatch order cannot matter
    c.train.num_epochs = EPOCHS
    c.train.ema_decay = DECAY
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = LR
    c.loss.reg = REG
    c.ensemble.size = 2
    c.ensemble.update(ensemble_fields)
    return c


@functools.cache
def shrunk_dataset():
    return settings.load_data(shrunk_config())


def build(config, dataset):
    """``members.build_members`` of the options ``config`` names (as run_ensemble reads them)."""
    options, dataset = ensemble.member_inputs(config, dataset)
    return members.build_members(options, dataset)


def np_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ORDER_SEED, SEARCH_BATCH = 11, 25  # 4 minibatches per epoch: the order matters


def _write_trials(path, rows, stages=None):
    """A trials.csv as lib/search.py ``_write_csv`` writes it (its exact header, for a space
    of learning_rate and reg); ``stages``: each row's stage (default 0)."""
    columns = [
        "stage",
        "trial",
        "slot",
        "status",
        "seed",
        "order_seed",
        "num_epochs",
        "learning_rate",
        "reg",
        "train_accuracy",
        "val_accuracy",
        "seconds",
        "diverged_epoch",
        "val_accuracy_per_epoch",
    ]
    with open(os.path.join(path, "trials.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, (status, val, seed, lr, reg) in enumerate(rows):
            writer.writerow(
                [
                    0 if stages is None else stages[i],
                    i,
                    i,
                    status,
                    seed,
                    ORDER_SEED,
                    EPOCHS,
                    lr,
                    reg,
                    0.9,
                    val,
                    0.1,
                    "" if status == "complete" else 1,
                    f"0.5000 {val:.4f}",
                ]
            )


class SourcesTest(parameterized.TestCase):
    def test_seeds_differ_and_ema_matches_numpy_running_average(self):
        ds = shrunk_dataset()
        groups, raw = build(shrunk_config(source="ema"), ds)
        (group,) = groups
        self.assertEqual(group.names, ("ema seed 0/0", "ema seed 0/1"))
        chex.assert_shape(group.params["W"], (2, 10, 64))
        self.assertGreater(
            float(jnp.max(jnp.abs(raw.params["W"][0] - raw.params["W"][1]))), 1e-3
        )  # different initialisations give different members
        # Hand computation: full-batch gradient descent on mean softmax CE + REG * |W|^2,
        # and the debiased running average e_t = d e_{t-1} + (1 - d) w_t, e_0 = 0, / (1 - d^t).
        x, y = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train)
        onehot = np.eye(10)[y]
        member_keys = jax.random.split(jax.random.key(0), 2)
        for m, member_key in enumerate(member_keys):
            p = train.init_params(jax.random.split(member_key)[0], group.setup)
            w, b = np.asarray(p["W"], np.float64), np.asarray(p["b"], np.float64)
            ew, eb = np.zeros_like(w), np.zeros_like(b)
            for t in range(1, EPOCHS + 1):
                ds_ = (np_softmax(x @ w.T + b) - onehot) / len(y)
                w, b = w - LR * (ds_.T @ x + 2 * REG * w), b - LR * ds_.sum(axis=0)
                ew, eb = DECAY * ew + (1 - DECAY) * w, DECAY * eb + (1 - DECAY) * b
            np.testing.assert_allclose(raw.params["W"][m], w, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(
                group.params["W"][m], ew / (1 - DECAY**EPOCHS), rtol=1e-4, atol=1e-5
            )
            np.testing.assert_allclose(
                group.params["b"][m], eb / (1 - DECAY**EPOCHS), rtol=1e-4, atol=1e-5
            )
        self.assertGreater(float(jnp.max(jnp.abs(group.params["W"] - raw.params["W"]))), 1e-3)

    def test_seeds_equal_a_plain_vmap_of_fit_over_the_split_keys_padded_or_not(self):
        ds, key = shrunk_dataset(), jax.random.key(0)
        options, _ = ensemble.member_inputs(shrunk_config(), ds)
        data, setup = train.to_device(ds), options.setup
        plain = jax.jit(jax.vmap(train.fit, in_axes=(0, None, None, None)), static_argnums=3)
        hp = settings.float32_hparams(options.hparams)
        want_state, want_history = plain(jax.random.split(key, 2), hp, data, setup)
        want_state = want_state._replace(key=jax.random.key_data(want_state.key))
        mesh = sharding.trial_mesh(jax.devices()[:1])
        state, history = members.train_seeds(key, options.hparams, data, setup, 2, mesh)
        chex.assert_trees_all_equal((state, history), (want_state, want_history))  # bitwise
        # Padded to 3 lanes (a copy of the first key), the padding dropped.
        state, history = sharding.fit_split(key, 2, options.hparams, data, setup, mesh, pad_to=3)
        chex.assert_trees_all_close(
            (state, history), (want_state, want_history), rtol=1e-6, atol=1e-7
        )
        self.assertEqual(history["val_accuracy"].shape, (2, EPOCHS))
        with self.assertRaisesRegex(ValueError, "positive integer"):
            sharding.fit_split(key, 0, options.hparams, data, setup, mesh)

    def test_search_picks_top_complete_trials_and_retrains_them(self):
        with tempfile.TemporaryDirectory() as d:
            _write_trials(
                d,
                [
                    ("complete", 0.80, 3, 0.1, 1e-3),
                    ("diverged", 0.99, 4, 50.0, 1e-3),  # best score, but diverged
                    ("complete", 0.90, 5, 0.3, 1e-4),
                    ("complete", 0.85, 6, 0.2, 0.0),
                ],
            )
            trials = members.top_trials(d, 2)
            self.assertEqual([t["trial"] for t in trials], ["2 (stage 0)", "3 (stage 0)"])
            self.assertEqual(
                trials[0]["fields"],
                {"seed": 5, "num_epochs": EPOCHS, "learning_rate": 0.3, "reg": 1e-4},
            )
            self.assertEqual([t["order_seed"] for t in trials], [ORDER_SEED, ORDER_SEED])
            config = shrunk_config(source="search", search_dir=d)
            config.train.batch_size = SEARCH_BATCH
            groups, raw = build(config, shrunk_dataset())
            self.assertIsNone(raw)
            (group,) = groups
            self.assertEqual(group.names, ("trial 2 (stage 0)", "trial 3 (stage 0)"))
            self.assertEqual(group.setup.batch_size, SEARCH_BATCH)
            # Each member is fit(key(seed), its hparams, order_key=key(order_seed)), as the
            # sweep trained it; another minibatch order gives other weights.
            data = train.to_device(shrunk_dataset())
            fit = jax.jit(train.fit, static_argnums=3)
            hp = settings.float32_hparams(settings.hparams_from_config(config))
            for m, (seed, lr, reg) in enumerate([(5, 0.3, 1e-4), (6, 0.2, 0.0)]):
                hp_m = {**hp, "learning_rate": jnp.float32(lr), "reg": jnp.float32(reg)}
                want, _ = fit(
                    jax.random.key(seed), hp_m, data, group.setup, jax.random.key(ORDER_SEED)
                )
                got = jax.tree.map(lambda a: a[m], group.params)
                chex.assert_trees_all_close(got, want.params, rtol=1e-5, atol=1e-6)
                other, _ = fit(
                    jax.random.key(seed), hp_m, data, group.setup, jax.random.key(ORDER_SEED + 1)
                )
                self.assertGreater(float(jnp.max(jnp.abs(got["W"] - other.params["W"]))), 1e-4)
            # own_order: each member is fit(key(seed), its hparams) with its own order.
            config.ensemble.own_order = True
            (own,) = build(config, shrunk_dataset())[0]
            for m, (seed, lr, reg) in enumerate([(5, 0.3, 1e-4), (6, 0.2, 0.0)]):
                hp_m = {**hp, "learning_rate": jnp.float32(lr), "reg": jnp.float32(reg)}
                want, _ = fit(jax.random.key(seed), hp_m, data, own.setup, None)
                got = jax.tree.map(lambda a: a[m], own.params)
                chex.assert_trees_all_close(got, want.params, rtol=1e-5, atol=1e-6)

    def test_search_members_come_from_the_last_stage_unless_asked(self):
        with tempfile.TemporaryDirectory() as d:
            rows = [("complete", v, 3 + i, 0.1, 1e-3) for i, v in enumerate([0.9, 0.8, 0.7])]
            _write_trials(d, rows, stages=[0, 1, 1])  # the stage-0 trial scores best
            self.assertEqual(
                [t["trial"] for t in members.top_trials(d, 2)], ["1 (stage 1)", "2 (stage 1)"]
            )
            self.assertEqual(
                [t["trial"] for t in members.top_trials(d, 2, "all")],
                ["0 (stage 0)", "1 (stage 1)"],
            )
            with self.assertRaisesRegex(ValueError, "2 complete trials of its last stage"):
                members.top_trials(d, 3)
            with self.assertRaisesRegex(ValueError, "search_stages='first' is not one of"):
                members.top_trials(d, 1, "first")

    def test_search_end_to_end_from_a_real_sweep(self):
        with tempfile.TemporaryDirectory() as d:
            sweep = digits_sweep.get_config()
            sweep.dataset.num_train = NUM_TRAIN
            sweep.train.batch_size = SEARCH_BATCH
            sweep.search.stages = "8x2"
            sweep.search.trials_per_batch = 8
            search.run_search(sweep, d)
            with open(os.path.join(d, "trials.csv"), newline="") as f:
                rows = {
                    f"trial {r['trial']} (stage {r['stage']})": float(r["val_accuracy"])
                    for r in csv.DictReader(f)
                    if r["status"] == "complete"
                }
            config = shrunk_config(source="search", search_dir=d, size=3)
            options, dataset = ensemble.member_inputs(config)
            groups, _ = members.build_members(options, dataset)
            result = ensemble.evaluate(groups, dataset)
            got = {r["name"]: r["val_accuracy"] for r in result["members"]}
            self.assertLen(got, 3)
            self.assertEqual(sorted(got.values()), sorted(rows.values())[-3:])  # the top 3
            for name, acc in got.items():
                self.assertAlmostEqual(acc, rows[name], delta=1e-6)

    def test_search_groups_trials_by_structure(self):
        base = shrunk_config()
        trials = [
            {
                "trial": str(i),
                "val_accuracy": 0.5,
                "seed": 40 + i,
                "order_seed": 0,
                "fields": {"model": "two_layer", "hidden": h, "learning_rate": lr, "seed": 40 + i},
            }
            for i, (h, lr) in enumerate([(8, 0.1), (16, 0.2), (8, 0.3)])
        ]
        groups = members.group_trials(
            trials, settings.setup_from_config(base, 64, 10), settings.hparams_from_config(base)
        )
        self.assertEqual(
            [(s.hidden, [t["trial"] for t in ts]) for s, ts, _ in groups],
            [(8, ["0", "2"]), (16, ["1"])],
        )
        self.assertEqual([hp["learning_rate"] for hp in groups[0][2]], [0.1, 0.3])
        self.assertEqual([t["seed"] for t in groups[0][1]], [40, 42])

    def test_trial_setup_matches_the_trial_config(self):
        base = shrunk_config()
        setup, hp = settings.setup_from_config(base, 64, 10), settings.hparams_from_config(base)
        fields = {
            "seed": 7,
            "num_epochs": 5,
            "model": "two_layer",
            "hidden": 12,
            "optimizer": "adam",
            "learning_rate": 0.01,
            "beta1": 0.8,
            "ema_decay": 0.0,
        }
        config = ml_collections.ConfigDict(base.to_dict())  # the trial as a config
        for name, value in fields.items():
            settings.set_field(config, settings.CONFIG_PATHS[name], value)
        got_setup, got_hp = members.trial_setup(setup, hp, fields)
        self.assertEqual(got_setup, settings.setup_from_config(config, 64, 10))
        self.assertFalse(got_setup.ema)  # the base keeps an average (DECAY); this trial not
        self.assertEqual(got_hp, settings.hparams_from_config(config))
        self.assertEqual(hp["learning_rate"], LR)  # the base is left as it was
        with self.assertRaisesRegex(ValueError, "'params_lr' is neither"):
            members.trial_setup(setup, hp, {"params_lr": 0.1})

    def test_checkpoints_are_the_last_epochs(self):
        with tempfile.TemporaryDirectory() as d:
            train_dir = os.path.join(d, "train")
            tc = shrunk_config()
            tc.train.ema_decay = 0.0
            tc.train.num_epochs = 4
            tc.train.checkpoint_every = 1  # a checkpoint per epoch: members are epochs
            summary = train.train_and_evaluate(tc, train_dir)
            config = shrunk_config(source="checkpoints", train_dir=train_dir)
            groups, _ = build(config, shrunk_dataset())
            (group,) = groups
            self.assertEqual(group.names, ("epoch 3", "epoch 4"))
            for m, epoch in enumerate((3, 4)):
                saved = checkpoints.restore(os.path.join(train_dir, "checkpoints"), epoch)
                chex.assert_trees_all_close(
                    jax.tree.map(lambda a: a[m], group.params), saved["params"]
                )
            result = ensemble.evaluate(groups, shrunk_dataset())
            self.assertAlmostEqual(result["members"][1]["val_accuracy"], summary["val_accuracy"])
            spiral = settings.load_data(
                ml_collections.ConfigDict({"seed": 0, "dataset": {"name": "spiral", "scale": 1.0}})
            )  # 3 classes, 2-D
            with self.assertRaisesRegex(ValueError, "trained on 'digits', not 'spiral'"):
                members.from_checkpoints(ensemble.member_inputs(config, spiral)[0], spiral)
            config.ensemble.size = 5
            with self.assertRaisesRegex(ValueError, "larger than the 4 checkpoints"):
                build(config, shrunk_dataset())
            config.ensemble.train_dir = os.path.join(d, "missing")
            with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
                build(config, shrunk_dataset())

    def test_bad_search_dirs(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
                members.top_trials(os.path.join(d, "nope"), 2)
            with self.assertRaisesRegex(FileNotFoundError, "no trials.csv"):
                members.top_trials(d, 2)
            with open(os.path.join(d, "trials.csv"), "w") as f:
                f.write("trial,status,val_accuracy\n")
            with self.assertRaisesRegex(ValueError, "holds no trials"):
                members.top_trials(d, 2)
            with open(os.path.join(d, "trials.csv"), "w") as f:
                f.write("trial,status,val_accuracy,params_lr\n0,complete,0.5,0.1\n")
            with self.assertRaisesRegex(
                ValueError, r"not a trials.csv of experiments.sweep \(missing columns \['stage'"
            ):
                members.top_trials(d, 1)
            with self.assertRaisesRegex(ValueError, r"unknown columns \['params_lr'\]"):
                members.top_trials(d, 1)
            _write_trials(d, [("complete", 0.8, 1, 0.1, 0.0), ("diverged", 0.9, 2, 9.0, 0.0)])
            with self.assertRaisesRegex(ValueError, "size 2 is larger than the 1 complete"):
                members.top_trials(d, 2)
            with self.assertRaisesRegex(ValueError, "search_dir"):
                build(shrunk_config(source="search", search_dir=""), shrunk_dataset())

    def test_bad_config(self):
        ds = shrunk_dataset()
        with self.assertRaisesRegex(ValueError, "unknown ensemble source 'bag'.*seeds"):
            build(shrunk_config(source="bag"), ds)
        with self.assertRaisesRegex(ValueError, "positive integer"):
            build(shrunk_config(size=0), ds)
        no_ema = shrunk_config(source="ema")
        no_ema.train.ema_decay = 0.0
        with self.assertRaisesRegex(ValueError, "ema_decay"):
            build(no_ema, ds)

    def test_check_groups(self):
        stacked = {"W": jnp.zeros((2, 3, 4)), "b": jnp.zeros((2, 3))}
        group = members.Group(settings.Setup(4, 3), stacked, ("a", "b"))
        members.check_groups([group], num_features=4, num_classes=3)  # consistent: no error
        with self.assertRaisesRegex(ValueError, "at least one member group"):
            members.check_groups([])
        with self.assertRaisesRegex(ValueError, "the data have 10"):
            members.check_groups([group], num_classes=10)
        with self.assertRaisesRegex(
            ValueError,
            r"holds params of shape \(2, 3, 4\), expected "
            r"\(3, 3, ...\)",
        ):
            members.check_groups([group._replace(names=("a", "b", "c"))])


if __name__ == "__main__":
    absltest.main()
