"""Tests for lib/space.py (parsing stages and spaces, Optuna distributions),
lib/samplers.py (random vs grid sampling) and lib/narrowing.py (narrowing, border warnings)."""

import math
import re

import numpy as np
import optuna
from absl.testing import absltest, parameterized

from lib import narrowing, samplers, settings, space

LOG_SPACE = {"learning_rate": space.Dim(1e-6, 10.0, "log"), "reg": space.Dim(1e-5, 1e-1, "log")}


class SamplingTest(parameterized.TestCase):
    def test_log_uniform_range_and_distribution(self):
        rows = samplers.sample_random(LOG_SPACE, 4000, seed=7)
        lr = np.array([r["learning_rate"] for r in rows])
        self.assertTrue(np.all((lr >= 1e-6) & (lr <= 10.0)))
        # log10 values are uniform on [-6, 1]: Kolmogorov-Smirnov distance to the uniform CDF
        # (critical value at 1% for n = 4000 is 1.63 / sqrt(n) = 0.026).
        u = np.sort((np.log10(lr) + 6) / 7)
        ks = np.max(np.abs(u - (np.arange(1, len(u) + 1) - 0.5) / len(u)))
        self.assertLess(ks, 0.026)
        # ... and each decade holds about a seventh of the draws (a uniform-in-lr sampler
        # would put 90% of them in the top decade).
        counts = np.histogram(np.log10(lr), bins=7, range=(-6, 1))[0] / len(lr)
        np.testing.assert_allclose(counts, 1 / 7, atol=0.03)

    def test_random_row_is_the_notes_formula_and_independent_of_num(self):
        row = samplers.sample_random(LOG_SPACE, 3, seed=[5, 1])[2]
        rng = np.random.default_rng([5, 1, 2])
        lr = 10 ** rng.uniform(-6, 1)  # names are drawn in sorted order: learning_rate, reg
        reg = 10 ** rng.uniform(-5, -1)
        self.assertAlmostEqual(row["learning_rate"], lr, places=12)
        self.assertAlmostEqual(row["reg"], reg, places=12)
        self.assertEqual(samplers.sample_random(LOG_SPACE, 10, seed=[5, 1])[2], row)

    def test_grid_vs_random(self):
        grid = samplers.sample_grid(LOG_SPACE, 16)
        self.assertLen(grid, 16)
        # 4 x 4 cell centres on the log scale: log10 lr = -6 + (i + 1/2) * 7/4.
        expected = sorted(10 ** (-6 + (i + 0.5) * 7 / 4) for i in range(4))
        np.testing.assert_allclose(sorted({r["learning_rate"] for r in grid}), expected)
        self.assertLen({(r["learning_rate"], r["reg"]) for r in grid}, 16)
        # The notes' point: random search tries 16 distinct learning rates, a grid only 4.
        rand = samplers.sample_random(LOG_SPACE, 16, seed=0)
        self.assertLen({r["learning_rate"] for r in rand}, 16)

    def test_choices_and_integers(self):
        dims = {
            "optimizer": space.Dim(scale="choice", choices=("sgd", "adam")),
            "hidden": space.Dim(10, 40, "linear"),
        }
        rows = samplers.sample_random(dims, 200, seed=0)
        self.assertEqual({r["optimizer"] for r in rows}, {"sgd", "adam"})
        self.assertTrue(all(isinstance(r["hidden"], int) and 10 <= r["hidden"] <= 40 for r in rows))
        self.assertLen(samplers.sample_grid(dims, 8), 8)  # 2 choices x 4 sizes

    def test_linear_integers_are_uniform_endpoints_included(self):
        rows = samplers.sample_random({"num_epochs": space.Dim(1, 4, "linear")}, 4000, seed=3)
        counts = np.bincount([r["num_epochs"] for r in rows], minlength=5)[1:]
        # Each of 1..4 has probability 1/4 (sd of a count: sqrt(4000 * 3/16) = 27); rounding
        # uniform(1, 4) would give the endpoints half weight (about 667 each).
        np.testing.assert_allclose(counts, 1000, atol=110)

    def test_log_integers_give_each_integer_its_log_cell(self):
        rows = samplers.sample_random({"hidden": space.Dim(1, 4, "log")}, 4000, seed=4)
        freq = np.bincount([r["hidden"] for r in rows], minlength=5)[1:] / 4000
        # P(k) = log((k + 1/2) / (k - 1/2)) / log(4.5 / 0.5): 0.5, 0.232, 0.153, 0.114.
        k = np.arange(1, 5)
        expected = np.log((k + 0.5) / (k - 0.5)) / np.log(9.0)
        np.testing.assert_allclose(freq, expected, atol=0.025)

    def test_grid_keeps_each_rounded_integer_once(self):
        # k = 8 centres 10 + (i + 1/2) * 2/8 round to 10, 10, 11, 11, 11, 11, 12, 12.
        grid = samplers.sample_grid({"hidden": space.Dim(10, 12, "linear")}, 8)
        self.assertEqual(grid, [{"hidden": 10}, {"hidden": 11}, {"hidden": 12}])

    def test_top_indices_best_first_ties_in_order(self):
        scores = [0.1, 0.5, 0.3, 0.5, 0.2]
        np.testing.assert_array_equal(narrowing.top_indices(scores, 0.4), [1, 3])  # ceil(0.4*5)=2
        np.testing.assert_array_equal(narrowing.top_indices(scores, 0.01), [1])  # at least one
        np.testing.assert_array_equal(narrowing.top_indices(scores, 1.0), [1, 3, 2, 4, 0])


class SamplerRegistryTest(absltest.TestCase):
    def test_one_entry_per_sampler_and_its_slots(self):
        self.assertEqual(tuple(samplers.SAMPLERS), ("random", "grid", "tpe"))
        self.assertEqual(
            {n: s.name for n, s in samplers.SAMPLERS.items()}, {n: n for n in samplers.SAMPLERS}
        )
        random, grid, tpe = (samplers.SAMPLERS[n] for n in ("random", "grid", "tpe"))
        self.assertEqual(
            random.plan(LOG_SPACE, 5, [3, 1]), samplers.sample_random(LOG_SPACE, 5, [3, 1])
        )
        self.assertEqual(grid.num_slots(LOG_SPACE, 15), 16)  # rounded to a full 4 x 4 grid
        self.assertEqual(random.num_slots(LOG_SPACE, 15), 15)
        self.assertEqual(tpe.plan(LOG_SPACE, 3, [0, 0]), [{}, {}, {}])
        self.assertIsNone(random.propose)
        self.assertIsNone(grid.propose)
        self.assertIs(tpe.propose, samplers.propose_tpe)


class BorderAndNarrowTest(parameterized.TestCase):
    """A synthetic objective peaked at learning_rate = 1e-2, reg = 1e-3."""

    def _scores(self, rows):
        return [
            1.0 - abs(math.log10(r["learning_rate"]) + 2) / 10 - abs(math.log10(r["reg"]) + 3) / 100
            for r in rows
        ]

    @parameterized.parameters(((1e-6, 1e-4), "high"), ((1e0, 1e1), "low"))
    def test_border_warning_fires_when_the_optimum_is_outside(self, bounds, side):
        dims = {"learning_rate": space.Dim(*bounds, "log"), "reg": LOG_SPACE["reg"]}
        rows = samplers.sample_random(dims, 64, seed=0)
        warnings = narrowing.border_warnings(dims, rows, self._scores(rows))
        self.assertLen(warnings, 1)
        self.assertIn("learning_rate", warnings[0])
        self.assertIn(f"{side} border", warnings[0])
        self.assertIn(f"--config.search.space.learning_rate.{side}=", warnings[0])

    def test_border_warning_silent_when_the_optimum_is_inside(self):
        rows = samplers.sample_random(LOG_SPACE, 64, seed=0)
        self.assertEqual(narrowing.border_warnings(LOG_SPACE, rows, self._scores(rows)), [])

    def test_border_warning_at_a_hard_limit_says_so(self):
        dims = {"dropout": space.Dim(0.0, 0.5, "linear")}
        rows = [{"dropout": d} for d in np.linspace(0, 0.5, 20)]
        warnings = narrowing.border_warnings(dims, rows, [-r["dropout"] for r in rows])
        self.assertLen(warnings, 1)
        self.assertIn("limit of valid dropout", warnings[0])

    @parameterized.parameters(
        # dropout in [0, 1): 0.1 - 0.4/2 = -0.1 is refused, half the step, 0.1 - 0.1 = 0, is not.
        ("dropout", (0.1, 0.5), "low", "dropout.low=0"),
        # 0.9 + 0.4, + 0.2, + 0.1 reach 1 or more; 0.9 + 0.05 = 0.95 is the first valid bound.
        ("dropout", (0.1, 0.9), "high", "dropout.high=0.95"),
        # hidden sizes: 10 - 90/2 is negative, clipped to the smallest size, 1.
        ("hidden", (10, 100), "low", "hidden.low=1"),
    )
    def test_border_warning_below_a_hard_limit_suggests_a_valid_bound(
        self, name, bounds, side, flag
    ):
        dims = {name: space.Dim(*bounds, "linear")}
        rows = [{name: v} for v in np.linspace(*bounds, 20)]
        sign = -1 if side == "low" else 1
        warnings = narrowing.border_warnings(dims, rows, [sign * r[name] for r in rows])
        self.assertLen(warnings, 1)
        self.assertIn(f"{side} border", warnings[0])
        self.assertIn(f"--config.search.space.{flag}", warnings[0])
        self.assertRegex(warnings[0], re.escape(flag) + r"( |$)")

    def test_border_warning_checks_the_sweeps_setup(self):
        dims = {"dropout": space.Dim(0.1, 0.5, "linear")}
        rows = [{"dropout": v} for v in np.linspace(0.1, 0.5, 20)]
        setup = settings.Setup(4, 3, model="two_layer")
        (w,) = narrowing.border_warnings(dims, rows, [-r["dropout"] for r in rows], setup)
        self.assertIn("--config.search.space.dropout.low=0 ", w)

    def test_border_warning_at_the_smallest_integer_says_so(self):
        dims = {"hidden": space.Dim(1, 100, "linear")}
        rows = [{"hidden": h} for h in range(1, 101, 5)]
        warnings = narrowing.border_warnings(dims, rows, [-r["hidden"] for r in rows])
        self.assertLen(warnings, 1)
        self.assertIn("limit of valid hidden", warnings[0])

    def test_border_warning_of_a_narrowed_stage_only_at_a_configured_bound(self):
        configured = {"learning_rate": space.Dim(1e-6, 1e-1, "log")}
        rows = [{"learning_rate": v} for v in np.logspace(-4, -2, 20)]
        scores = [math.log10(r["learning_rate"]) for r in rows]  # best at the high side
        narrowed = {"learning_rate": space.Dim(1e-4, 1e-2, "log")}
        # The search narrowed the high bound itself: the optimum is inside the configured range.
        self.assertEqual(
            narrowing.border_warnings(narrowed, rows, scores, configured=configured), []
        )
        # At the configured bound: the suggestion widens the configured range, not the stage's.
        at_bound = {"learning_rate": space.Dim(1e-4, 1e-1, "log")}
        rows = [{"learning_rate": v} for v in np.logspace(-4, -1, 20)]
        scores = [math.log10(r["learning_rate"]) for r in rows]
        (w,) = narrowing.border_warnings(at_bound, rows, scores, configured=configured)
        # configured [1e-6, 1e-1]: half its log-width (2.5 decades) above 1e-1 -> 10 ** 1.5.
        self.assertIn("configured range [1e-06, 0.1]", w)
        self.assertIn(f"learning_rate.high={10**1.5:.3g}", w)
        self.assertIn("new --workdir", w)

    @parameterized.product(
        dim=(space.Dim(3e-4, 5e-3, "log"), space.Dim(0.13, 0.57, "linear")),
        side=("low", "high"),
    )
    def test_non_round_configured_bounds_survive_every_stage_and_still_warn(self, dim, side):
        # The best trials sit at one configured bound. Three stages of narrowing keep that
        # bound exactly as configured (10 ** log10(5e-3) != 5e-3), so every stage warns.
        configured = {"dropout": dim}
        current = configured
        for stage in range(3):
            bounds = (current["dropout"].low, current["dropout"].high)
            lo, hi = (float(space.to_scale(dim, b)) for b in bounds)
            rows = [{"dropout": float(space.from_scale(dim, t))} for t in np.linspace(lo, hi, 32)]
            sign = -1 if side == "low" else 1
            scores = [sign * float(space.to_scale(dim, r["dropout"])) for r in rows]
            self.assertEqual(getattr(current["dropout"], side), getattr(dim, side), stage)
            warnings = narrowing.border_warnings(current, rows, scores, configured=configured)
            self.assertLen(warnings, 1, stage)
            self.assertIn(f"{side} border", warnings[0])
            narrowed = narrowing.narrow(current, rows, scores, top_fraction=0.25)
            other = "high" if side == "low" else "low"
            self.assertNotEqual(getattr(narrowed["dropout"], other), getattr(dim, other))
            current = narrowed

    def test_stages_narrow_the_ranges_around_the_best(self):
        dims = {**LOG_SPACE, "optimizer": space.Dim(scale="choice", choices=("sgd", "adam"))}
        rows = samplers.sample_random(dims, 64, seed=1)
        scores = [s + (r["optimizer"] == "adam") for s, r in zip(self._scores(rows), rows)]
        new = narrowing.narrow(dims, rows, scores, top_fraction=0.25)
        self.assertEqual(new["optimizer"].choices, ("adam",))
        top = [rows[i] for i in narrowing.top_indices(scores, 0.25)]
        for name in LOG_SPACE:
            old_w = math.log10(dims[name].high / dims[name].low)
            new_w = math.log10(new[name].high / new[name].low)
            self.assertLessEqual(new_w, old_w)
            self.assertGreaterEqual(new[name].low, dims[name].low)
            self.assertLessEqual(new[name].high, dims[name].high)
            self.assertTrue(all(new[name].low <= r[name] <= new[name].high for r in top))
        self.assertLess(math.log10(new["learning_rate"].high / new["learning_rate"].low), 3.5)

    def test_narrow_exact_on_a_linear_range(self):
        # Top half of four trials: mu = 0.6 and 0.7 -> span [0.6, 0.7], padded by
        # max(0.1 / 4, (0.95 - 0.05) / 20) = 0.045 -> [0.555, 0.745].
        dims = {"mu": space.Dim(0.05, 0.95, "linear"), "hidden": space.Dim(10, 100, "linear")}
        rows = [{"mu": m, "hidden": h} for m, h in ((0.1, 90), (0.6, 40), (0.7, 50), (0.9, 99))]
        new = narrowing.narrow(dims, rows, [0.0, 1.0, 0.9, 0.2], top_fraction=0.5)
        self.assertAlmostEqual(new["mu"].low, 0.555)
        self.assertAlmostEqual(new["mu"].high, 0.745)
        # hidden: [40, 50] padded by max(10 / 4, 90 / 20) = 4.5 -> floor/ceil of [35.5, 54.5].
        self.assertEqual((new["hidden"].low, new["hidden"].high), (35, 55))
        with self.assertRaisesRegex(ValueError, "without finished trials"):
            narrowing.narrow(dims, [], [], top_fraction=0.5)


class ParseTest(parameterized.TestCase):
    @parameterized.parameters(
        ("64x1,16x5,4x20", [(64, 1), (16, 5), (4, 20)]),
        (" 8X2 , 4x3", [(8, 2), (4, 3)]),
        ([(8, 2), [4, 3]], [(8, 2), (4, 3)]),
        ("", [(12, 7)]),
        (None, [(12, 7)]),
    )
    def test_stages(self, stages, expected):
        self.assertEqual(space.stages_from_config(stages, num_trials=12, num_epochs=7), expected)

    @parameterized.parameters("64-1", "64x0", "64x1,", "8x2x3", "ax1", [(8,)], [(8, None)])
    def test_bad_stages(self, stages):
        with self.assertRaisesRegex(ValueError, "TRIALSxEPOCHS"):
            space.stages_from_config(stages, num_trials=12, num_epochs=7)

    def test_space_from_config_and_json_round_trip(self):
        dims = space.space_from_config(
            {
                "learning_rate": {"low": 1e-4, "high": 1, "scale": "log"},
                "dropout": {"low": 0, "high": 0.5, "scale": "linear"},
                "hidden": {"choices": [50, 100]},
            }
        )
        self.assertEqual(
            dims,
            {
                "learning_rate": space.Dim(1e-4, 1.0, "log"),
                "dropout": space.Dim(0.0, 0.5, "linear"),
                "hidden": space.Dim(scale="choice", choices=(50, 100)),
            },
        )
        self.assertEqual(space.space_from_json(space.space_to_json(dims)), dims)

    @parameterized.named_parameters(
        ("empty", {}, "search.space is empty"),
        (
            "unknown_name",
            {"learnin_rate": {"low": 1e-3, "high": 1.0}},
            "valid names: learning_rate",
        ),
        ("not_a_dict", {"reg": 1e-3}, "must be a dict"),
        ("unknown_field", {"reg": {"low": 1e-3, "high": 1.0, "step": 2}}, "unknown fields"),
        ("repeated_choice", {"hidden": {"choices": [10, 10]}}, "distinct"),
        ("low_above_high", {"learning_rate": {"low": 1.0, "high": 1e-3}}, "below high"),
        ("log_nonpositive", {"reg": {"low": 0.0, "high": 1e-2, "scale": "log"}}, "low > 0"),
    )
    def test_bad_space(self, entries, message):
        with self.assertRaisesRegex(ValueError, message):
            space.space_from_config(entries)

    @parameterized.named_parameters(
        ("mu_range", {"mu": space.Dim(0.5, 1.5, "linear")}, "linear", "mu"),
        (
            "fractional_hidden",
            {"hidden": space.Dim(10.5, 20, "linear")},
            "two_layer",
            "positive integers",
        ),
        (
            "hidden_in_linear",
            {"hidden": space.Dim(10, 20, "linear")},
            "linear",
            "model.name=two_layer",
        ),
        (
            "unknown_optimizer",
            {"optimizer": space.Dim(scale="choice", choices=("sgd", "x"))},
            "linear",
            "unknown optimizers",
        ),
    )
    def test_check_space(self, dims, model, message):
        setup = settings.Setup(4, 3, model=model, optimizer="momentum")
        with self.assertRaisesRegex(ValueError, message):
            space.check_space(dims, setup, [(8, 2)])
        space.check_space({"reg": space.Dim(1e-5, 1e-1)}, setup, [(8, 2)])  # a valid one passes

    @parameterized.named_parameters(
        ("mu_with_adam", {"mu": space.Dim(0.5, 0.9, "linear")}, {}, "optimizer.name=momentum"),
        (
            "mu_with_sgd_and_rmsprop",
            {
                "mu": space.Dim(0.5, 0.9, "linear"),
                "optimizer": space.Dim(scale="choice", choices=("sgd", "rmsprop")),
            },
            {},
            "use mu",
        ),
        (
            "beta1_without_adam",
            {"beta1": space.Dim(0.5, 0.9, "linear")},
            {"optimizer": "sgd"},
            "adam",
        ),
        ("decay_rate", {"decay_rate": space.Dim(0.5, 0.9, "linear")}, {}, "rmsprop"),
        (
            "lr_decay_constant",
            {"lr_decay": space.Dim(0.1, 0.9, "linear")},
            {},
            "schedule.name=step",
        ),
        (
            "lr_k_step",
            {"lr_k": space.Dim(0.01, 1.0)},
            {"schedule": "step"},
            "schedule.name=exponential",
        ),
        ("ema_off", {"ema_decay": space.Dim(0.5, 0.99, "linear")}, {}, "train.ema_decay"),
        ("lr_with_lbfgs", {"learning_rate": space.Dim(1e-4, 1.0)}, {"optimizer": "lbfgs"}, "lbfgs"),
        (
            "lr_with_newton",
            {"learning_rate": space.Dim(1e-4, 1.0)},
            {"optimizer": "newton"},
            "trains with newton.*optimizers sgd, momentum",
        ),
        (
            "lr_decay_with_newton",
            {"lr_decay": space.Dim(0.1, 0.9, "linear")},
            {"optimizer": "newton", "schedule": "step"},
            "newton takes no learning rate",
        ),
    )
    def test_ignored_hyperparameters_are_refused(self, dims, setup_kw, message):
        setup = settings.Setup(4, 3, **{"optimizer": "adam", **setup_kw})
        with self.assertRaisesRegex(ValueError, message):
            space.check_space(dims, setup, [(8, 2)])

    def test_used_hyperparameters_pass(self):
        dims = {
            "mu": space.Dim(0.5, 0.9, "linear"),
            "beta1": space.Dim(0.5, 0.9, "linear"),
            "optimizer": space.Dim(scale="choice", choices=("momentum", "adam")),
            "lr_k": space.Dim(0.01, 1.0),
            "ema_decay": space.Dim(0.5, 0.99, "linear"),
        }
        space.check_space(dims, settings.Setup(4, 3, schedule="inverse_time", ema=True), [(8, 2)])

    def test_num_epochs_with_stages_conflict(self):
        dims = {"num_epochs": space.Dim(scale="choice", choices=(1, 2))}
        space.check_space(dims, settings.Setup(4, 3), [(8, 2)])
        with self.assertRaisesRegex(ValueError, "conflicts with search.stages"):
            space.check_space(dims, settings.Setup(4, 3), [(8, 2), (4, 5)])

    def test_distributions(self):
        dists = space.distributions(
            {
                "learning_rate": space.Dim(1e-4, 1.0, "log"),
                "dropout": space.Dim(0.0, 0.5, "linear"),
                "hidden": space.Dim(16, 256, "log"),
                "optimizer": space.Dim(scale="choice", choices=("sgd", "adam")),
            }
        )
        self.assertEqual(
            dists,
            {
                "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                "dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
                "hidden": optuna.distributions.IntDistribution(16, 256, log=True),
                "optimizer": optuna.distributions.CategoricalDistribution(("sgd", "adam")),
            },
        )


if __name__ == "__main__":
    absltest.main()
