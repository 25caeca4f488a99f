"""Tests for lib.ensemble: vmapped prediction, combination rules, the four sources, bad input.

Training compiles dominate the cost, so every test that trains uses the same shrunk digits
config (linear softmax, plain SGD, one full-batch step per epoch, 3 epochs, 2 members):
one vmapped ``fit`` program over seeds and one over trials serve all of them.
"""

import csv
import functools
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import digits_ensemble
from lib import checkpoints, ensemble, scores, train

LR, REG, DECAY, EPOCHS, NUM_TRAIN = 0.5, 1e-3, 0.9, 3, 100


def _config(**ensemble_fields):
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
def _dataset():
    return train.load_data(_config())


def _np_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_scores(params, x, model):
    """Plain-numpy float64 transcription of one member's scores."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    if model == "linear":
        return x @ p["W"].T + p["b"]
    return np.maximum(0.0, x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]


def _random_members(model, m, d, k, seed=0):
    keys = jax.random.split(jax.random.key(seed), m)
    if model == "linear":
        members = [scores.init_linear(key, d, k, scale=1.0) for key in keys]
        members = [{**p, "b": jax.random.normal(key, (k,))} for p, key in zip(members, keys)]
    else:
        members = [scores.init_two_layer(key, d, 5, k) for key in keys]
        members = [jax.tree.map(lambda a: 3.0 * a, p) for p in members]
    return members, jax.tree.map(lambda *p: jnp.stack(p), *members)


def _write_trials(path, rows):
    """A trials.csv in experiments.sweep's format (its exact header)."""
    columns = ["stage", "trial", "slot", "status", "seed", "num_epochs", "learning_rate", "reg",
               "train_accuracy", "val_accuracy", "seconds", "diverged_epoch",
               "val_accuracy_per_epoch"]
    with open(os.path.join(path, "trials.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, (status, val, seed, lr, reg) in enumerate(rows):
            writer.writerow([0, i, i, status, seed, EPOCHS, lr, reg, 0.9, val, 0.1,
                             "" if status == "complete" else 1, f"0.5000 {val:.4f}"])


class PredictTest(parameterized.TestCase):

    @parameterized.parameters("linear", "two_layer")
    def test_vmapped_proba_is_mean_of_members_one_at_a_time(self, model):
        members, stacked = _random_members(model, m=4, d=6, k=3)
        x = np.asarray(jax.random.normal(jax.random.key(9), (7, 6)))
        expected = np.mean([_np_softmax(_np_scores(p, x, model)) for p in members], axis=0)
        got = ensemble.predict_proba(stacked, x, model)
        chex.assert_shape(got, (7, 3))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.sum(got, axis=-1), 1.0, rtol=1e-6)

    def test_linear_wide_product_equals_vmap(self):
        _, stacked = _random_members("linear", m=5, d=8, k=4)
        x = jax.random.normal(jax.random.key(1), (11, 8))
        chex.assert_trees_all_close(ensemble.member_scores_linear_wide(stacked, x),
                                    ensemble.member_scores(stacked, x, "linear"),
                                    rtol=1e-5, atol=1e-5)
        chex.assert_trees_all_close(ensemble.predict_proba_linear_wide(stacked, x),
                                    ensemble.predict_proba(stacked, x, "linear"),
                                    rtol=1e-5, atol=1e-6)

    def test_combine_scores_and_vote(self):
        s = np.array([[[2.0, 0.0, 1.0]], [[0.0, 3.0, 0.0]], [[2.5, 0.0, 0.0]]])  # (3, 1, 3)
        np.testing.assert_allclose(ensemble.combine(s, "scores"),
                                   _np_softmax(s.mean(axis=0)), rtol=1e-6)
        vote = np.asarray(ensemble.combine(s, "vote"))
        self.assertEqual(int(np.argmax(vote[0])), 0)  # two of three vote for class 0
        np.testing.assert_allclose(np.floor(3 * vote[0] + 1e-6), [2, 1, 0])
        # A 1-1 tie goes to the class with the higher mean probability.
        tie = np.array([[[5.0, 0.0]], [[0.0, 1.0]]])
        self.assertEqual(int(np.argmax(ensemble.combine(tie, "vote")[0])), 0)

    @parameterized.parameters("proba", "scores", "vote")
    def test_ensemble_beats_every_member_when_they_err_on_different_examples(self, how):
        # x_i = e_i, so member m's scores on example i are column i of W_m. Member m is right
        # (score 2 on the label) on every example but m, where it scores 1 on a wrong class.
        k = 3
        x, y = np.eye(k, dtype=np.float32), np.arange(k, dtype=np.int32)
        members = []
        for m in range(k):
            w = 2.0 * np.eye(k, dtype=np.float32)
            w[:, m] = 0.0
            w[(m + 1) % k, m] = 1.0
            members.append({"W": w, "b": np.zeros(k, np.float32)})
        stacked = jax.tree.map(lambda *p: jnp.stack(p), *members)
        group = ensemble.Group(train.Setup(k, k), stacked, ("a", "b", "c"))
        s = ensemble.stacked_scores([group], x)
        member_acc = np.mean(np.argmax(s, axis=-1) == y, axis=-1)
        np.testing.assert_allclose(member_acc, [2 / 3] * 3)
        ens_acc = np.mean(np.argmax(ensemble.combine(jnp.asarray(s), how), axis=-1) == y)
        self.assertEqual(ens_acc, 1.0)

    def test_mixed_groups_and_chunks_match_members_one_at_a_time(self):
        lin, lin_stacked = _random_members("linear", m=2, d=6, k=3, seed=1)
        two, two_stacked = _random_members("two_layer", m=3, d=6, k=3, seed=2)
        groups = [ensemble.Group(train.Setup(6, 3), lin_stacked, ("l0", "l1")),
                  ensemble.Group(train.Setup(6, 3, model="two_layer", hidden=5), two_stacked,
                                 ("t0", "t1", "t2"))]
        x = np.asarray(jax.random.normal(jax.random.key(3), (10, 6)))
        expected = np.stack([_np_scores(p, x, "linear") for p in lin] +
                            [_np_scores(p, x, "two_layer") for p in two])
        for chunk in (4, 100):  # 4: three chunks, the last one padded
            np.testing.assert_allclose(ensemble.stacked_scores(groups, x, chunk=chunk), expected,
                                       rtol=1e-4, atol=1e-4)

    def test_bad_input(self):
        members, stacked = _random_members("linear", m=2, d=4, k=3)
        with self.assertRaisesRegex(ValueError, "leading member axis"):
            ensemble.predict_proba(members[0]["b"], np.ones((2, 4)), "linear")
        with self.assertRaisesRegex(ValueError, "2-D"):
            ensemble.predict_proba(stacked, np.ones(4), "linear")
        with self.assertRaisesRegex(ValueError, "unknown model 'cnn'"):
            ensemble.predict_proba(stacked, np.ones((2, 4)), "cnn")
        with self.assertRaisesRegex(ValueError, "unknown combine 'max'.*proba"):
            ensemble.combine(jnp.ones((2, 3, 4)), "max")
        _, other = _random_members("linear", m=2, d=4, k=5)
        groups = [ensemble.Group(train.Setup(4, 3), stacked, ("a", "b")),
                  ensemble.Group(train.Setup(4, 5), other, ("c", "d"))]
        with self.assertRaisesRegex(ValueError, "incompatible class counts"):
            ensemble.stacked_scores(groups, np.ones((2, 4), np.float32))


class SourcesTest(parameterized.TestCase):

    def test_seeds_differ_and_ema_matches_numpy_running_average(self):
        ds = _dataset()
        groups, raw = ensemble.build_members(_config(source="ema"), ds)
        (group,) = groups
        self.assertEqual(group.names, ("ema seed 0/0", "ema seed 0/1"))
        chex.assert_shape(group.params["W"], (2, 10, 64))
        self.assertGreater(float(jnp.max(jnp.abs(raw.params["W"][0] - raw.params["W"][1]))),
                           1e-3)  # different initialisations give different members
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
                ds_ = (_np_softmax(x @ w.T + b) - onehot) / len(y)
                w, b = w - LR * (ds_.T @ x + 2 * REG * w), b - LR * ds_.sum(axis=0)
                ew, eb = DECAY * ew + (1 - DECAY) * w, DECAY * eb + (1 - DECAY) * b
            np.testing.assert_allclose(raw.params["W"][m], w, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(group.params["W"][m], ew / (1 - DECAY**EPOCHS),
                                       rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(group.params["b"][m], eb / (1 - DECAY**EPOCHS),
                                       rtol=1e-4, atol=1e-5)
        self.assertGreater(float(jnp.max(jnp.abs(group.params["W"] - raw.params["W"]))), 1e-3)

    def test_search_picks_top_complete_trials_and_retrains_them(self):
        with tempfile.TemporaryDirectory() as d:
            _write_trials(d, [
                ("complete", 0.80, 3, 0.1, 1e-3),
                ("diverged", 0.99, 4, 50.0, 1e-3),  # best score, but diverged
                ("complete", 0.90, 5, 0.3, 1e-4),
                ("complete", 0.85, 6, 0.2, 0.0),
                ("pruned", 0.95, 7, 0.2, 0.0)])
            trials = ensemble.top_trials(d, 2)
            self.assertEqual([t["trial"] for t in trials], ["2 (stage 0)", "3 (stage 0)"])
            self.assertEqual(trials[0]["fields"], {"seed": 5, "num_epochs": EPOCHS,
                                                   "learning_rate": 0.3, "reg": 1e-4})
            groups, raw = ensemble.build_members(_config(source="search", search_dir=d),
                                                 _dataset())
            self.assertIsNone(raw)
            (group,) = groups
            self.assertEqual(group.names, ("trial 2 (stage 0)", "trial 3 (stage 0)"))
            # Each member is fit(key(seed), its hparams), here through the seeds program.
            data = train.to_device(_dataset())
            for m, (seed, lr, reg) in enumerate([(5, 0.3, 1e-4), (6, 0.2, 0.0)]):
                hp = {**train.hparams_from_config(_config()), "learning_rate": lr, "reg": reg}
                keys = jnp.stack([jax.random.key(seed)] * 2)
                state, _ = ensemble._fit_seeds(keys, ensemble._hp32(hp), data, group.setup)
                chex.assert_trees_all_close(jax.tree.map(lambda a: a[m], group.params),
                                            jax.tree.map(lambda a: a[0], state.params),
                                            rtol=1e-5, atol=1e-6)

    def test_search_groups_trials_by_structure(self):
        base = _config()
        trials = [{"trial": str(i), "val_accuracy": 0.5, "seed": None,
                   "fields": {"model": "two_layer", "hidden": h, "learning_rate": lr}}
                  for i, (h, lr) in enumerate([(8, 0.1), (16, 0.2), (8, 0.3)])]
        groups = ensemble.group_trials(trials, base, 64, 10)
        self.assertEqual([(s.hidden, [t["trial"] for t in ts]) for s, ts, _ in groups],
                         [(8, ["0", "2"]), (16, ["1"])])
        self.assertEqual([hp["learning_rate"] for hp in groups[0][2]], [0.1, 0.3])
        self.assertEqual(groups[0][1][0]["seed"], base.seed)  # no seed column: the config's

    def test_checkpoints_are_the_last_epochs(self):
        with tempfile.TemporaryDirectory() as d:
            train_dir = os.path.join(d, "train")
            tc = _config()
            tc.train.ema_decay = 0.0
            tc.train.num_epochs = 4
            summary = train.train_and_evaluate(tc, train_dir)
            config = _config(source="checkpoints", train_dir=train_dir)
            groups, _ = ensemble.build_members(config, _dataset())
            (group,) = groups
            self.assertEqual(group.names, ("epoch 3", "epoch 4"))
            for m, epoch in enumerate((3, 4)):
                saved = checkpoints.restore(os.path.join(train_dir, "checkpoints"), epoch)
                chex.assert_trees_all_close(jax.tree.map(lambda a: a[m], group.params),
                                            saved["params"])
            result = ensemble.evaluate(groups, _dataset())
            self.assertAlmostEqual(result["members"][1]["val_accuracy"], summary["val_accuracy"])
            spiral = train.load_data(ml_collections.ConfigDict(
                {"seed": 0, "dataset": {"name": "spiral", "scale": 1.0}}))  # 3 classes, 2-D
            with self.assertRaisesRegex(ValueError, "trained on 'digits', not 'spiral'"):
                ensemble.from_checkpoints(config, spiral)
            config.ensemble.size = 5
            with self.assertRaisesRegex(ValueError, "larger than the 4 checkpoints"):
                ensemble.build_members(config, _dataset())
            config.ensemble.train_dir = os.path.join(d, "missing")
            with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
                ensemble.build_members(config, _dataset())

    def test_bad_search_dirs(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
                ensemble.top_trials(os.path.join(d, "nope"), 2)
            with self.assertRaisesRegex(FileNotFoundError, "no trials.csv"):
                ensemble.top_trials(d, 2)
            with open(os.path.join(d, "trials.csv"), "w") as f:
                f.write("trial,status,val_accuracy\n")
            with self.assertRaisesRegex(ValueError, "holds no trials"):
                ensemble.top_trials(d, 2)
            _write_trials(d, [("complete", 0.8, 1, 0.1, 0.0), ("diverged", 0.9, 2, 9.0, 0.0)])
            with self.assertRaisesRegex(ValueError, "size 2 is larger than the 1 complete"):
                ensemble.top_trials(d, 2)
            with self.assertRaisesRegex(ValueError, "search_dir"):
                ensemble.build_members(_config(source="search", search_dir=""), _dataset())

    def test_bad_config(self):
        ds = _dataset()
        with self.assertRaisesRegex(ValueError, "unknown ensemble source 'bag'.*seeds"):
            ensemble.build_members(_config(source="bag"), ds)
        with self.assertRaisesRegex(ValueError, "positive integer"):
            ensemble.build_members(_config(size=0), ds)
        no_ema = _config(source="ema")
        no_ema.train.ema_decay = 0.0
        with self.assertRaisesRegex(ValueError, "ema_decay"):
            ensemble.build_members(no_ema, ds)


class EndToEndTest(absltest.TestCase):

    def test_run_ensemble_writes_the_workdir(self):
        with tempfile.TemporaryDirectory() as d:
            summary = ensemble.run_ensemble(_config(source="seeds"), d)
            for name in ("config.json", "summary.json", "ensemble.png"):
                self.assertTrue(os.path.exists(os.path.join(d, name)), name)
            self.assertLen(summary["members"], 2)
            for split in ("train", "val", "test"):
                self.assertEqual(summary[f"{split}_accuracy"],
                                 summary["ensemble"][f"{split}_accuracy"])
            for split in ("val", "test"):
                key = f"{split}_accuracy"
                accs = [m[key] for m in summary["members"]]
                self.assertAlmostEqual(summary["gain_over_mean"][key],
                                       summary["ensemble"][key] - np.mean(accs))
                self.assertGreater(summary["ensemble"][key], 0.6)
            self.assertGreater(summary["seconds"], 0.0)
            with self.assertRaisesRegex(ValueError, "different config"):
                ensemble.run_ensemble(_config(source="seeds", combine="vote"), d)
            ema = ensemble.run_ensemble(_config(source="ema"), os.path.join(d, "ema"))
            self.assertLen(ema["raw"]["members"], 2)


if __name__ == "__main__":
    absltest.main()
