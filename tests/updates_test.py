"""Tests for lib/updates.py: rules against numpy transcriptions and optax."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from jax.flatten_util import ravel_pytree

from lib import updates

# A random quadratic 0.5 x^T A x - b^T x (A SPD) over a pytree of two leaves.
_RNG = np.random.default_rng(0)
_M = _RNG.normal(size=(7, 7))
A_NP = _M @ _M.T / 7 + 0.5 * np.eye(7)
B_NP = _RNG.normal(size=7)
X0_NP = _RNG.normal(size=7)
X_STAR = np.linalg.solve(A_NP, B_NP)
_, UNRAVEL = ravel_pytree({"W": jnp.zeros((2, 2)), "b": jnp.zeros(3)})
PARAMS0 = UNRAVEL(jnp.asarray(X0_NP, jnp.float32))


def UNRAVEL64(x):
    """Float64 vector -> the two-leaf pytree (``UNRAVEL`` casts to float32)."""
    return {"W": x[:4].reshape(2, 2), "b": x[4:]}


A, B = jnp.asarray(A_NP, jnp.float32), jnp.asarray(B_NP, jnp.float32)
STEPS = 50


def loss(params):
    x = ravel_pytree(params)[0]
    return 0.5 * x @ A @ x - B @ x


def grad_np(x):
    return A_NP @ x - B_NP


def loss_np(x):
    return 0.5 * x @ A_NP @ x - B_NP @ x


def run(rule, params=PARAMS0, steps=STEPS):
    """Trajectory (steps, 7) of ravelled params under ``rule`` on the quadratic."""

    def body(carry, _):
        p, s = carry
        p, s = rule.apply(p, s, jax.grad(loss)(p))
        return (p, s), ravel_pytree(p)[0]

    _, traj = jax.lax.scan(body, (params, rule.init(params)), length=steps)
    return traj


def run_optax(tx, steps=STEPS):
    """Same as ``run`` but calling optax directly (not through from_optax)."""

    def body(carry, _):
        p, s = carry
        upd, s = tx.update(jax.grad(loss)(p), s, p)
        p = optax.apply_updates(p, upd)
        return (p, s), ravel_pytree(p)[0]

    _, traj = jax.lax.scan(body, (PARAMS0, tx.init(PARAMS0)), length=steps)
    return traj


# Plain-numpy transcriptions of the notes' formulas (float64). ``lr`` is a
# function of the step, the first update using step 0.


def np_sgd(lr, steps=STEPS):
    x, out = X0_NP.copy(), []
    for t in range(steps):
        x += -lr(t) * grad_np(x)
        out.append(x.copy())
    return np.array(out)


def np_momentum(lr, mu, steps=STEPS):
    x, v, out = X0_NP.copy(), np.zeros(7), []
    for t in range(steps):
        v = mu * v - lr(t) * grad_np(x)
        x += v
        out.append(x.copy())
    return np.array(out)


def np_nesterov(lr, mu, steps=STEPS):
    x, v, out = X0_NP.copy(), np.zeros(7), []
    for t in range(steps):
        v_prev = v
        v = mu * v - lr(t) * grad_np(x)
        x += -mu * v_prev + (1 + mu) * v
        out.append(x.copy())
    return np.array(out)


def np_nesterov_lookahead(lr, mu, steps=STEPS):
    """Textbook form: gradient at x_ahead = x + mu*v. Returns (x, v) paths."""
    x, v, xs, vs = X0_NP.copy(), np.zeros(7), [], []
    for t in range(steps):
        x_ahead = x + mu * v
        v = mu * v - lr(t) * grad_np(x_ahead)
        x += v
        xs.append(x.copy())
        vs.append(v.copy())
    return np.array(xs), np.array(vs)


def np_adagrad(lr, eps, steps=STEPS, eps_in_sqrt=False):
    x, cache, out = X0_NP.copy(), np.zeros(7), []
    for t in range(steps):
        dx = grad_np(x)
        cache += dx**2
        if eps_in_sqrt:  # optax's form, for the documented difference
            x += -lr(t) * dx / np.sqrt(cache + eps)
        else:
            x += -lr(t) * dx / (np.sqrt(cache) + eps)
        out.append(x.copy())
    return np.array(out)


def np_rmsprop(lr, decay_rate, eps, steps=STEPS):
    x, cache, out = X0_NP.copy(), np.zeros(7), []
    for t in range(steps):
        dx = grad_np(x)
        cache = decay_rate * cache + (1 - decay_rate) * dx**2
        x += -lr(t) * dx / (np.sqrt(cache) + eps)
        out.append(x.copy())
    return np.array(out)


def np_adam(lr, beta1, beta2, eps, bias_correction=True, steps=STEPS):
    x, m, v, out = X0_NP.copy(), np.zeros(7), np.zeros(7), []
    for t in range(1, steps + 1):
        dx = grad_np(x)
        m = beta1 * m + (1 - beta1) * dx
        v = beta2 * v + (1 - beta2) * dx**2
        if bias_correction:
            mt, vt = m / (1 - beta1**t), v / (1 - beta2**t)
        else:
            mt, vt = m, v
        x += -lr(t - 1) * mt / (np.sqrt(vt) + eps)
        out.append(x.copy())
    return np.array(out)


# name: (factory, hyperparameters, numpy reference, learning rate)
RULE_CASES = {
    "sgd": (updates.sgd, {}, np_sgd, 0.1),
    "momentum": (updates.momentum, {"mu": 0.8}, np_momentum, 0.05),
    "nesterov": (updates.nesterov, {"mu": 0.8}, np_nesterov, 0.05),
    "adagrad": (updates.adagrad, {"eps": 1e-8}, np_adagrad, 0.3),
    # Small lr: near the optimum rmsprop's dx/sqrt(cache) ~ sign(dx) dithers
    # and float32 rounding is amplified; 50 steps at 0.005 stay clear of it.
    "rmsprop": (updates.rmsprop, {"decay_rate": 0.9, "eps": 1e-8}, np_rmsprop, 0.005),
    "adam": (updates.adam, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, np_adam, 0.05),
    "adam_no_bias_correction": (
        updates.adam,
        {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction": False},
        np_adam,
        0.01,
    ),
}

# name: (our schedule from lr0, numpy transcription of lr(t) from lr0)
SCHEDULE_CASES = {
    "number": (lambda lr: lr, lambda lr: lambda t: lr),
    "constant": (updates.constant, lambda lr: lambda t: lr),
    "step": (
        lambda lr: updates.step_decay(lr, 0.5, 10),
        lambda lr: lambda t: lr * 0.5 ** (t // 10),
    ),
    "exponential": (
        lambda lr: updates.exponential_decay(lr, 0.03),
        lambda lr: lambda t: lr * math.exp(-0.03 * t),
    ),
    "inverse_time": (
        lambda lr: updates.inverse_time_decay(lr, 0.1),
        lambda lr: lambda t: lr / (1 + 0.1 * t),
    ),
}

TOL = {"rtol": 1e-4, "atol": 1e-4}


class RulesAgainstNumpyTest(parameterized.TestCase):
    @parameterized.named_parameters(
        (f"{rule}_{schedule}", rule, schedule) for rule in RULE_CASES for schedule in SCHEDULE_CASES
    )
    def test_matches_numpy_transcription(self, rule, schedule):
        factory, hp, reference, lr0 = RULE_CASES[rule]
        ours, theirs = SCHEDULE_CASES[schedule]
        traj = jax.jit(lambda: run(factory(ours(lr0), **hp)))()
        expected = reference(theirs(lr0), **hp)
        chex.assert_trees_all_close(np.asarray(traj), expected, **TOL)
        # The run must actually move, or the comparison would be vacuous.
        self.assertGreater(np.abs(expected[-1] - X0_NP).max(), 0.1)

    @parameterized.named_parameters((rule, rule) for rule in RULE_CASES)
    def test_matches_numpy_in_float64(self, rule):
        """In float64 the rules are the notes' formulas to the last digits."""
        factory, hp, reference, lr0 = RULE_CASES[rule]
        with jax.enable_x64(True):
            a, b = jnp.asarray(A_NP), jnp.asarray(B_NP)
            rule_ = factory(lr0, **hp)

            def body(carry, _):
                p, s = carry
                x = ravel_pytree(p)[0]
                p, s = rule_.apply(p, s, UNRAVEL64(a @ x - b))
                return (p, s), ravel_pytree(p)[0]

            params = UNRAVEL64(jnp.asarray(X0_NP))
            _, traj = jax.lax.scan(body, (params, rule_.init(params)), length=STEPS)
            self.assertEqual(traj.dtype, jnp.float64)
            np.testing.assert_allclose(
                np.asarray(traj), reference(lambda t: lr0, **hp), rtol=1e-12, atol=1e-12
            )

    def test_nesterov_two_forms_agree(self):
        """The re-parameterised x is the look-ahead point x + mu*v of the
        textbook form (both start at x0 with v = 0)."""
        lr, mu = 0.05, 0.8
        traj = np.asarray(jax.jit(lambda: run(updates.nesterov(lr, mu)))())
        xs, vs = np_nesterov_lookahead(lambda t: lr, mu)
        chex.assert_trees_all_close(traj, xs + mu * vs, **TOL)
        # ...and is a different sequence from the textbook x itself.
        self.assertGreater(np.abs(traj - xs).max(), 1e-2)

    def test_state_counts_steps(self):
        rule = updates.adam(0.1)
        state = rule.init(PARAMS0)
        chex.assert_trees_all_equal(state.count, jnp.zeros([], jnp.int32))
        params = PARAMS0
        for _ in range(3):
            params, state = rule.apply(params, state, jax.grad(loss)(params))
        self.assertEqual(state.count.dtype, jnp.int32)
        self.assertEqual(int(state.count), 3)
        chex.assert_trees_all_equal_shapes_and_dtypes(params, PARAMS0)


class RulesAgainstOptaxTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("sgd", updates.sgd(0.1), optax.sgd(0.1)),
        # optax keeps the trace t = g + mu*t and steps -lr*t. At constant lr the
        # notes' velocity is v = -lr*t by induction (v0 = t0 = 0;
        # mu*v - lr*g = -lr*(mu*t + g)), so x += v is the same step.
        ("momentum", updates.momentum(0.05, 0.8), optax.sgd(0.05, momentum=0.8)),
        # optax nesterov steps -lr*(g + mu*t_new) = -(1+mu)*lr*g - lr*mu^2*t;
        # the notes' -mu*v_prev + (1+mu)*v = mu^2*v_prev - (1+mu)*lr*g, equal
        # with v_prev = -lr*t.
        ("nesterov", updates.nesterov(0.05, 0.8), optax.sgd(0.05, momentum=0.8, nesterov=True)),
        (
            "rmsprop",
            updates.rmsprop(0.005, 0.9, 1e-8),
            optax.rmsprop(0.005, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=False),
        ),
        (
            "adam",
            updates.adam(0.05, 0.9, 0.999, 1e-8),
            optax.adam(0.05, b1=0.9, b2=0.999, eps=1e-8),
        ),
        # Tiny eps: eps inside or outside the sqrt no longer matters.
        (
            "adagrad",
            updates.adagrad(0.3, eps=1e-10),
            optax.adagrad(0.3, initial_accumulator_value=0.0, eps=1e-20),
        ),
    )
    def test_same_parameters_as_optax(self, ours, tx):
        traj, expected = jax.jit(lambda: (run(ours), run_optax(tx)))()
        chex.assert_trees_all_close(traj, expected, rtol=1e-5, atol=1e-5)
        self.assertGreater(float(jnp.abs(traj[-1] - X0_NP).max()), 0.1)

    def test_momentum_velocity_is_scaled_optax_trace(self):
        lr, mu = 0.05, 0.8
        rule, tx = updates.momentum(lr, mu), optax.sgd(lr, momentum=mu)
        p, s, o = PARAMS0, rule.init(PARAMS0), tx.init(PARAMS0)
        for _ in range(3):
            g = jax.grad(loss)(p)
            p, s = rule.apply(p, s, g)
            _, o = tx.update(g, o, p)
        trace = o[0].trace  # optax.TraceState inside the chain
        chex.assert_trees_all_close(s.velocity, jax.tree.map(lambda t: -lr * t, trace), rtol=1e-6)

    def test_adagrad_differs_from_optax_where_eps_is_inside_sqrt(self):
        """Documents the one difference: optax.adagrad steps
        -lr*g/sqrt(cache + eps) (eps inside the square root), the notes step
        -lr*g/(sqrt(cache) + eps). With a large eps the two trajectories differ;
        each matches its own numpy transcription."""
        lr, eps = 0.3, 1.0
        ours, theirs = jax.jit(
            lambda: (
                run(updates.adagrad(lr, eps=eps)),
                run_optax(optax.adagrad(lr, initial_accumulator_value=0.0, eps=eps)),
            )
        )()
        chex.assert_trees_all_close(ours, np_adagrad(lambda t: lr, eps), **TOL)
        chex.assert_trees_all_close(theirs, np_adagrad(lambda t: lr, eps, eps_in_sqrt=True), **TOL)
        self.assertGreater(float(jnp.abs(ours - theirs).max()), 1e-2)

    def test_from_optax_wraps_adam_and_matches_ours(self):
        wrapped = updates.from_optax(optax.adam(0.05))
        state = wrapped.init(PARAMS0)
        self.assertIsInstance(state, updates.OptaxState)
        traj, ours = jax.jit(lambda: (run(wrapped), run(updates.adam(0.05))))()
        chex.assert_trees_all_close(traj, ours, rtol=1e-5, atol=1e-5)


class NewtonTest(absltest.TestCase):
    def test_flat_hessian_of_quadratic_is_a(self):
        chex.assert_trees_all_close(updates.flat_hessian(loss)(PARAMS0), A, rtol=1e-6, atol=1e-6)

    def test_solves_quadratic_in_one_step(self):
        with jax.enable_x64(True):
            a, b = jnp.asarray(A_NP), jnp.asarray(B_NP)
            f = lambda p: (
                0.5 * ravel_pytree(p)[0] @ a @ ravel_pytree(p)[0] - (b @ ravel_pytree(p)[0])
            )
            params = UNRAVEL(jnp.asarray(X0_NP))
            rule = updates.newton(updates.flat_hessian(f))
            new, state = rule.apply(params, rule.init(params), jax.grad(f)(params))
            chex.assert_trees_all_close(ravel_pytree(new)[0], X_STAR, rtol=1e-12, atol=1e-12)
            self.assertEqual(int(state.count), 1)
        # float32 as well, to float32 tolerance.
        rule = updates.newton(updates.flat_hessian(loss))
        new, _ = rule.apply(PARAMS0, rule.init(PARAMS0), jax.grad(loss)(PARAMS0))
        chex.assert_trees_all_close(ravel_pytree(new)[0], X_STAR, rtol=1e-5, atol=1e-5)

    def test_singular_hessian_takes_the_minimum_norm_step(self):
        # A softmax-like flat direction: f(x) = (x0 + x1 - 1)^2 + (x2 - 2)^2 does not change
        # along (1, -1, 0), so H is singular. The step is the pseudo-inverse's: it lands on
        # the minimum closest to x (moving nothing along the flat direction), where a plain
        # solve divides round-off by zero.
        f = lambda p: (p["x"][0] + p["x"][1] - 1.0) ** 2 + (p["x"][2] - 2.0) ** 2
        params = {"x": jnp.asarray([0.3, -0.1, 0.0], jnp.float32)}
        rule = updates.newton(updates.flat_hessian(f))
        new, _ = rule.apply(params, rule.init(params), jax.grad(f)(params))
        x0 = np.array([0.3, -0.1, 0.0])
        expected = x0 + (1.0 - x0[0] - x0[1]) / 2 * np.array([1.0, 1.0, 0.0])
        expected[2] = 2.0
        chex.assert_trees_all_close(new["x"], expected, rtol=1e-5, atol=1e-5)

    def test_damping(self):
        g = jax.grad(loss)(PARAMS0)
        for damping in (0.5, 3.0):
            rule = updates.newton(updates.flat_hessian(loss), damping=damping)
            new, _ = rule.apply(PARAMS0, rule.init(PARAMS0), g)
            expected = X0_NP - np.linalg.solve(A_NP + damping * np.eye(7), grad_np(X0_NP))
            chex.assert_trees_all_close(ravel_pytree(new)[0], expected, rtol=1e-5, atol=1e-5)
        # Large damping: a gradient step with learning rate 1/damping.
        rule = updates.newton(updates.flat_hessian(loss), damping=1e4)
        new, _ = rule.apply(PARAMS0, rule.init(PARAMS0), g)
        step = ravel_pytree(new)[0] - X0_NP
        chex.assert_trees_all_close(step, -grad_np(X0_NP) / 1e4, rtol=2e-3, atol=1e-7)


class SchedulesTest(parameterized.TestCase):
    def test_hand_computed_values(self):
        steps = jnp.array([0, 1, 9, 10, 19, 20, 35])
        chex.assert_trees_all_close(
            updates.step_decay(0.1, 0.5, 10)(steps),
            jnp.array([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]),
            rtol=1e-6,
        )
        chex.assert_trees_all_close(
            updates.exponential_decay(0.1, 0.5)(jnp.array([0, 2, 4])),
            jnp.array([0.1, 0.036787944, 0.013533528]),
            rtol=1e-6,
        )
        chex.assert_trees_all_close(
            updates.inverse_time_decay(0.1, 0.5)(jnp.array([0, 2, 6])),
            jnp.array([0.1, 0.05, 0.025]),
            rtol=1e-6,
        )
        self.assertEqual(updates.constant(0.1)(0), 0.1)
        self.assertEqual(updates.constant(0.1)(1000), 0.1)

    def test_exponential_equals_optax_form(self):
        steps = jnp.arange(30)
        chex.assert_trees_all_close(
            updates.exponential_decay(0.1, 0.2)(steps),
            optax.exponential_decay(0.1, 1, math.exp(-0.2))(steps),
            rtol=1e-5,
        )

    def test_traced_step_decay_equals_optax_path(self):
        steps = jnp.arange(40)
        traced = jax.jit(lambda d, every: updates.step_decay(0.1, d, every)(steps))(0.5, 10)
        chex.assert_trees_all_close(traced, updates.step_decay(0.1, 0.5, 10)(steps), rtol=1e-6)

    def test_sgd_first_update_uses_step_zero(self):
        rule = updates.sgd(updates.step_decay(0.1, 0.5, 1))
        p, s = {"x": jnp.array([1.0])}, None
        s = rule.init(p)
        g = {"x": jnp.array([1.0])}
        p, s = rule.apply(p, s, g)
        chex.assert_trees_all_close(p["x"], jnp.array([0.9]))  # lr(0) = 0.1
        p, s = rule.apply(p, s, g)
        chex.assert_trees_all_close(p["x"], jnp.array([0.85]))  # lr(1) = 0.05

    @parameterized.parameters(*updates.RULES)
    def test_every_rule_first_update_uses_step_zero(self, name):
        # lr(0) = 0: if the first update used step 0 nothing moves; the second
        # (step 1, lr 0.1) moves.
        rule = updates.get_rule(name)(lambda step: jnp.where(step == 0, 0.0, 0.1))
        g = jax.grad(loss)(PARAMS0)
        p1, s = rule.apply(PARAMS0, rule.init(PARAMS0), g)
        chex.assert_trees_all_equal(p1, PARAMS0)
        p2, _ = rule.apply(p1, s, g)
        self.assertGreater(float(jnp.abs(ravel_pytree(p2)[0] - X0_NP).max()), 1e-3)

    def test_registry(self):
        self.assertIs(updates.get_schedule("step"), updates.step_decay)
        self.assertIs(updates.get_schedule("1/t"), updates.inverse_time_decay)
        self.assertIs(updates.get_schedule("inverse_time"), updates.inverse_time_decay)
        for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
            self.assertIs(updates.get_rule(name), getattr(updates, name))


class ConvergenceTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("sgd", lambda: updates.sgd(0.3)),
        ("momentum", lambda: updates.momentum(0.05, 0.9)),
        ("nesterov", lambda: updates.nesterov(0.05, 0.9)),
        ("adagrad", lambda: updates.adagrad(0.5)),
        ("rmsprop", lambda: updates.rmsprop(updates.inverse_time_decay(0.02, 0.02), 0.99)),
        ("adam", lambda: updates.adam(updates.step_decay(0.1, 0.5, 100))),
    )
    def test_reaches_optimum(self, make_rule):
        traj = np.asarray(jax.jit(lambda: run(make_rule(), steps=500))())
        x_final = traj[-1].astype(np.float64)
        self.assertLess(loss_np(x_final) - loss_np(X_STAR), 1e-4)
        self.assertLess(np.abs(x_final - X_STAR).max(), 1e-2)
        self.assertLess(loss_np(traj[10]), loss_np(X0_NP))


class TracedHyperparametersTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        chex.clear_trace_counter()

    @parameterized.named_parameters(
        ("sgd", "sgd", [{"learning_rate": v} for v in (0.1, 0.01, 1e-3)]),
        (
            "momentum",
            "momentum",
            [
                {"learning_rate": 0.1, "mu": 0.5},
                {"learning_rate": 0.01, "mu": 0.9},
                {"learning_rate": 1e-3, "mu": 0.99},
            ],
        ),
        (
            "nesterov",
            "nesterov",
            [{"learning_rate": 0.1, "mu": 0.5}, {"learning_rate": 0.01, "mu": 0.9}],
        ),
        (
            "adagrad",
            "adagrad",
            [{"learning_rate": 0.1, "eps": 1e-8}, {"learning_rate": 0.5, "eps": 1e-4}],
        ),
        (
            "rmsprop",
            "rmsprop",
            [
                {"learning_rate": 0.1, "decay_rate": 0.9, "eps": 1e-8},
                {"learning_rate": 0.01, "decay_rate": 0.99, "eps": 1e-6},
            ],
        ),
        (
            "adam",
            "adam",
            [
                {"learning_rate": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
                {"learning_rate": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
                {"learning_rate": 1e-3, "beta1": 0.0, "beta2": 0.99, "eps": 1e-4},
            ],
        ),
    )
    def test_one_compiled_step_serves_every_value(self, name, hparam_list):
        factory = updates.get_rule(name)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(params, state, grads, hp):
            return factory(**hp).apply(params, state, grads)

        g = jax.grad(loss)(PARAMS0)
        for hp in hparam_list:
            state = factory(**hp).init(PARAMS0)
            traced_hp = jax.tree.map(jnp.float32, hp)
            got = step(PARAMS0, state, g, traced_hp)
            want = factory(**hp).apply(PARAMS0, state, g)  # eager, concrete values
            chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)

    def test_traced_schedule_hyperparameters_trace_once(self):

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(params, state, grads, lr, d, k):
            rule = updates.momentum(
                lambda t: (
                    updates.step_decay(lr, d, 5)(t)
                    + updates.inverse_time_decay(lr, k)(t)
                    + updates.exponential_decay(lr, k)(t)
                ),
                mu=0.9,
            )
            return rule.apply(params, state, grads)

        g = jax.grad(loss)(PARAMS0)
        state = updates.momentum(0.1).init(PARAMS0)
        for lr, d, k in ((0.1, 0.5, 0.1), (0.01, 0.9, 1.0)):
            got, _ = step(PARAMS0, state, g, lr, d, k)
            want = jax.tree.map(lambda x, dx: x - 3 * lr * dx, PARAMS0, g)
            chex.assert_trees_all_close(got, want, rtol=1e-6)

    def test_vmap_over_hyperparameters_equals_separate_runs(self):

        def fit(lr, beta1):
            return run(updates.adam(lr, beta1=beta1), steps=20)[-1]

        lrs = jnp.array([0.01, 0.03, 0.1])
        beta1s = jnp.array([0.9, 0.5, 0.0])
        batched = jax.jit(jax.vmap(fit))(lrs, beta1s)
        single = jax.jit(fit)
        separate = jnp.stack([single(lr, b1) for lr, b1 in zip(lrs, beta1s)])
        chex.assert_trees_all_close(batched, separate, rtol=1e-6, atol=1e-6)
        # Different learning rates really give different results.
        self.assertGreater(float(jnp.abs(batched[0] - batched[2]).max()), 1e-2)

    def test_traced_values_skip_range_checks(self):
        # A traced learning rate cannot be checked in Python; it must not raise.
        out = jax.jit(
            lambda lr: updates.sgd(lr).apply(PARAMS0, updates.sgd(0.1).init(PARAMS0), PARAMS0)[0]
        )(-1.0)
        chex.assert_trees_all_close(out, jax.tree.map(lambda x: 2 * x, PARAMS0))


class BadInputTest(parameterized.TestCase):
    @parameterized.product(name=list(updates.RULES), lr=[0.0, -0.1])
    def test_non_positive_learning_rate(self, name, lr):
        with self.assertRaisesRegex(ValueError, rf"{name}.*learning_rate={lr!r}.*> 0"):
            updates.get_rule(name)(lr)

    def test_numpy_learning_rate_is_checked(self):
        with self.assertRaisesRegex(ValueError, "learning_rate"):
            updates.adam(np.float32(-1e-3))
        with self.assertRaisesRegex(ValueError, "learning_rate"):
            updates.sgd(jnp.array(0.0))

    def test_non_numeric_learning_rate(self):
        with self.assertRaisesRegex(TypeError, "sgd: learning_rate must be a"):
            updates.sgd("0.01")

    @parameterized.product(name=["momentum", "nesterov"], mu=[1.0, -0.1, 1.5])
    def test_mu_out_of_range(self, name, mu):
        with self.assertRaisesRegex(ValueError, rf"{name}: mu=.*0 <= mu < 1"):
            updates.get_rule(name)(0.1, mu=mu)

    def test_other_ranges(self):
        cases = [
            (lambda: updates.adam(beta1=1.0), "0 <= beta1 < 1"),
            (lambda: updates.adam(beta2=-0.1), "0 <= beta2 < 1"),
            (lambda: updates.adam(eps=0.0), "eps > 0"),
            (lambda: updates.rmsprop(0.1, decay_rate=1.0), "0 < decay_rate < 1"),
            (lambda: updates.rmsprop(0.1, decay_rate=0.0), "0 < decay_rate < 1"),
            (lambda: updates.adagrad(0.1, eps=-1.0), "eps > 0"),
            (lambda: updates.newton(lambda p: None, damping=-1.0), "damping >= 0"),
            (lambda: updates.step_decay(0.1, 0.5, 0), "every >= 1"),
            (lambda: updates.step_decay(0.1, 1.5, 10), "decay_rate <= 1"),
            (lambda: updates.exponential_decay(0.1, -1.0), "k >= 0"),
            (lambda: updates.inverse_time_decay(0.0, 1.0), "learning_rate > 0"),
        ]
        for make, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                make()

    def test_unknown_names_list_valid_ones(self):
        with self.assertRaisesRegex(ValueError, r"'adamw'.*'adam'.*'sgd'"):
            updates.get_rule("adamw")
        with self.assertRaisesRegex(ValueError, r"'cosine'.*'constant'.*'step'"):
            updates.get_schedule("cosine")

    def test_grads_not_shaped_like_params(self):
        rule = updates.sgd(0.1)
        state = rule.init(PARAMS0)
        with self.assertRaisesRegex(ValueError, "same tree structure"):
            rule.apply(PARAMS0, state, {"W": jnp.zeros((2, 2))})
        with self.assertRaisesRegex(ValueError, r"shape \(3, 1\)"):
            rule.apply(PARAMS0, state, {"W": jnp.zeros((2, 2)), "b": jnp.zeros((3, 1))})

    def test_newton_bad_hessian(self):
        rule = updates.newton(lambda p: jnp.eye(3))
        with self.assertRaisesRegex(ValueError, r"expected \(7, 7\)"):
            rule.apply(PARAMS0, rule.init(PARAMS0), PARAMS0)
        with self.assertRaisesRegex(TypeError, "hessian_fn"):
            updates.newton("not a function")

    def test_from_optax_rejects_non_transformation(self):
        with self.assertRaisesRegex(TypeError, "GradientTransformation"):
            updates.from_optax(0.1)


if __name__ == "__main__":
    absltest.main()
