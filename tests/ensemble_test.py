"""Tests for lib.ensemble: vmapped prediction, combination rules, evaluation, the experiment.

The end-to-end test trains with tests/members_test.py's shrunk digits config, so the two test
files share one compiled vmapped ``fit``.
"""

import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from lib import ensemble, members, scores, settings
from tests.members_test import np_softmax, shrunk_config


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
        params = [scores.init_linear(key, d, k, scale=1.0) for key in keys]
        params = [{**p, "b": jax.random.normal(key, (k,))} for p, key in zip(params, keys)]
    else:
        params = [scores.init_two_layer(key, d, 5, k) for key in keys]
        params = [jax.tree.map(lambda a: 3.0 * a, p) for p in params]
    return params, jax.tree.map(lambda *p: jnp.stack(p), *params)


class PredictTest(parameterized.TestCase):
    @parameterized.parameters("linear", "two_layer")
    def test_vmapped_proba_is_mean_of_members_one_at_a_time(self, model):
        member_params, stacked = _random_members(model, m=4, d=6, k=3)
        x = np.asarray(jax.random.normal(jax.random.key(9), (7, 6)))
        expected = np.mean([np_softmax(_np_scores(p, x, model)) for p in member_params], axis=0)
        got = ensemble.predict_proba(stacked, x, model)
        chex.assert_shape(got, (7, 3))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.sum(got, axis=-1), 1.0, rtol=1e-6)

    def test_linear_wide_product_equals_vmap(self):
        _, stacked = _random_members("linear", m=5, d=8, k=4)
        x = jax.random.normal(jax.random.key(1), (11, 8))
        chex.assert_trees_all_close(
            ensemble.member_scores_linear_wide(stacked, x),
            ensemble.member_scores(stacked, x, "linear"),
            rtol=1e-5,
            atol=1e-5,
        )
        chex.assert_trees_all_close(
            ensemble.predict_proba_linear_wide(stacked, x),
            ensemble.predict_proba(stacked, x, "linear"),
            rtol=1e-5,
            atol=1e-6,
        )

    def test_member_scores_take_a_model_name_or_a_setup(self):
        _, stacked = _random_members("two_layer", m=3, d=6, k=3)
        x = jax.random.normal(jax.random.key(2), (5, 6))
        setup = settings.Setup(6, 3, model="two_layer", hidden=5)
        chex.assert_trees_all_close(
            ensemble.member_scores(stacked, x, setup),
            ensemble.member_scores(stacked, x, "two_layer"),
        )
        chex.assert_shape(ensemble.member_scores(stacked, x, setup), (3, 5, 3))

    def test_combine_scores_and_vote(self):
        s = np.array([[[2.0, 0.0, 1.0]], [[0.0, 3.0, 0.0]], [[2.5, 0.0, 0.0]]])  # (3, 1, 3)
        np.testing.assert_allclose(
            ensemble.combine(s, "scores"), np_softmax(s.mean(axis=0)), rtol=1e-6
        )
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
        member_params = []
        for m in range(k):
            w = 2.0 * np.eye(k, dtype=np.float32)
            w[:, m] = 0.0
            w[(m + 1) % k, m] = 1.0
            member_params.append({"W": w, "b": np.zeros(k, np.float32)})
        stacked = jax.tree.map(lambda *p: jnp.stack(p), *member_params)
        group = members.Group(settings.Setup(k, k), stacked, ("a", "b", "c"))
        s = ensemble.stacked_scores([group], x)
        member_acc = np.mean(np.argmax(s, axis=-1) == y, axis=-1)
        np.testing.assert_allclose(member_acc, [2 / 3] * 3)
        ens_acc = np.mean(np.argmax(ensemble.combine(jnp.asarray(s), how), axis=-1) == y)
        self.assertEqual(ens_acc, 1.0)

    def test_mixed_groups_and_chunks_match_members_one_at_a_time(self):
        lin, lin_stacked = _random_members("linear", m=2, d=6, k=3, seed=1)
        two, two_stacked = _random_members("two_layer", m=3, d=6, k=3, seed=2)
        groups = [
            members.Group(settings.Setup(6, 3), lin_stacked, ("l0", "l1")),
            members.Group(
                settings.Setup(6, 3, model="two_layer", hidden=5), two_stacked, ("t0", "t1", "t2")
            ),
        ]
        x = np.asarray(jax.random.normal(jax.random.key(3), (10, 6)))
        expected = np.stack(
            [_np_scores(p, x, "linear") for p in lin] + [_np_scores(p, x, "two_layer") for p in two]
        )
        for chunk in (4, 100):  # 4: three chunks, the last one padded
            np.testing.assert_allclose(
                ensemble.stacked_scores(groups, x, chunk=chunk), expected, rtol=1e-4, atol=1e-4
            )

    def test_bad_input(self):
        member_params, stacked = _random_members("linear", m=2, d=4, k=3)
        with self.assertRaisesRegex(ValueError, "leading member axis"):
            ensemble.predict_proba(member_params[0]["b"], np.ones((2, 4)), "linear")
        with self.assertRaisesRegex(ValueError, "2-D"):
            ensemble.predict_proba(stacked, np.ones(4), "linear")
        with self.assertRaisesRegex(ValueError, "unknown model 'cnn'"):
            ensemble.predict_proba(stacked, np.ones((2, 4)), "cnn")
        with self.assertRaisesRegex(ValueError, "unknown combine 'max'.*proba"):
            ensemble.combine(jnp.ones((2, 3, 4)), "max")
        _, other = _random_members("linear", m=2, d=4, k=5)
        groups = [
            members.Group(settings.Setup(4, 3), stacked, ("a", "b")),
            members.Group(settings.Setup(4, 5), other, ("c", "d")),
        ]
        with self.assertRaisesRegex(ValueError, "incompatible class counts"):
            ensemble.stacked_scores(groups, np.ones((2, 4), np.float32))
        with self.assertRaisesRegex(ValueError, "x has 5 features.*give x with 4"):
            ensemble.predict_proba_linear_wide(stacked, np.ones((2, 5)))
        with self.assertRaisesRegex(ValueError, "take 4 features but the data have 5"):
            ensemble.stacked_scores(groups[:1], np.ones((2, 5), np.float32))
        with self.assertRaisesRegex(ValueError, "N >= 1"):
            ensemble.stacked_scores(groups[:1], np.ones((0, 4), np.float32))


class EndToEndTest(absltest.TestCase):
    def test_data_parallel_is_refused_and_the_workdir_untouched(self):
        config = shrunk_config(source="seeds")
        config.train.data_parallel = True
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(ValueError, r"its members .*data_parallel=False"):
                ensemble.run_ensemble(config, d)
            self.assertEqual(os.listdir(d), [])

    def test_run_ensemble_writes_the_workdir(self):
        with tempfile.TemporaryDirectory() as d:
            summary = ensemble.run_ensemble(shrunk_config(source="seeds"), d)
            for name in ("config.json", "summary.json", "ensemble.png"):
                self.assertTrue(os.path.exists(os.path.join(d, name)), name)
            self.assertLen(summary["members"], 2)
            for split in ("train", "val", "test"):
                self.assertEqual(
                    summary[f"{split}_accuracy"], summary["ensemble"][f"{split}_accuracy"]
                )
            for split in ("val", "test"):
                key = f"{split}_accuracy"
                accs = [m[key] for m in summary["members"]]
                self.assertAlmostEqual(
                    summary["gain_over_mean"][key], summary["ensemble"][key] - np.mean(accs)
                )
                self.assertGreater(summary["ensemble"][key], 0.6)
            self.assertGreater(summary["seconds"], 0.0)
            with self.assertRaisesRegex(ValueError, "different config"):
                ensemble.run_ensemble(shrunk_config(source="seeds", combine="vote"), d)
            ema = ensemble.run_ensemble(shrunk_config(source="ema"), os.path.join(d, "ema"))
            self.assertLen(ema["raw"]["members"], 2)


if __name__ == "__main__":
    absltest.main()
