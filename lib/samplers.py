"""The samplers of a search, and their one registry: how a stage's trials get their params.

``SAMPLERS`` maps each ``search.sampler`` name to a :class:`Sampler`: ``plan`` gives a stage's
slots their fixed params up front (random search, a grid), ``propose`` gives a claimed slot
its params at claim time (TPE). Adding a sampler is adding one entry.

Random search draws each value independently, exactly as the notes:

    learning_rate = 10 ** uniform(log10(low), log10(high))      (log scale)

TPE proposes a trial's params when its slot is claimed (``propose_tpe``), from a model fitted
to one stage's finished trials (BOHB's rule: model the largest budget with enough
observations): this stage's own once it has ``search.tpe_startup`` of them (at least
``len(space) + 2``), before that the latest earlier stage with ``len(space) + 2`` or more.
So a stage after the first starts from what the earlier stages learned instead of a random
start-up; only a stage with no earlier stage to model (the first) begins with
``search.tpe_startup`` random trials. Trials still running count as bad ones (constant
liar), so one batch spreads out: smaller batches model more often.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import TrialState

from lib.space import INTEGER, Dim, Space, finish, from_scale, to_scale

# Stage k's finished trials as (params, value, distributions) triples, for k < this stage.
Earlier = Sequence[Sequence[tuple[dict, float, dict]]]


def _random_int(dim: Dim, rng: np.random.Generator) -> int:
    """An integer in [low, high], each equally likely (linear) or each with the log-width of
    its cell [k - 1/2, k + 1/2] (log):
    ``round(10 ** uniform(log10(low - 1/2), log10(high + 1/2)))``."""
    low, high = int(dim.low), int(dim.high)
    if dim.scale == "linear":
        return int(rng.integers(low, high + 1))
    value = 10 ** rng.uniform(math.log10(low - 0.5), math.log10(high + 0.5))
    return min(max(round(value), low), high)


def _random_value(name: str, dim: Dim, rng: np.random.Generator):
    """One draw of one dimension (see :func:`sample_random`)."""
    if dim.scale == "choice":
        return dim.choices[int(rng.integers(len(dim.choices)))]
    if name in INTEGER:
        return _random_int(dim, rng)
    if dim.scale == "log":
        return finish(name, dim, 10 ** rng.uniform(math.log10(dim.low), math.log10(dim.high)))
    return finish(name, dim, rng.uniform(dim.low, dim.high))


def sample_random(space: Space, num: int, seed: int | Sequence[int]) -> list[dict[str, Any]]:
    """``num`` independent draws; row i comes from its own generator ``[*seed, i]``.

    Log scale: ``10 ** uniform(log10 low, log10 high)``; linear: ``uniform(low, high)``;
    choices: uniformly one of them; integers (``hidden``, ``num_epochs``): every integer of
    [low, high] equally likely (linear) or log-uniform over their cells (log), see
    :func:`_random_int`. Row i does not depend on ``num``.
    """
    seed = list(np.atleast_1d(seed).astype(int))
    rows = []
    for i in range(num):
        rng = np.random.default_rng([*seed, i])
        rows.append({name: _random_value(name, space[name], rng) for name in sorted(space)})
    return rows


def sample_grid(space: Space, num: int) -> list[dict[str, Any]]:
    """A full grid of about ``num`` points: every choice, and k points per numeric
    dimension at the cell centres ``low + (i + 1/2) (high - low) / k`` on its scale, with
    ``k = max(1, round((num / #choice combinations) ** (1 / #numeric dims)))``. Integer
    dimensions keep each rounded value once (a narrow range may hold fewer than k)."""
    names = sorted(space)
    numeric = [n for n in names if space[n].scale != "choice"]
    combos = math.prod(len(space[n].choices) for n in names if space[n].scale == "choice")
    k = max(1, round((num / combos) ** (1 / max(len(numeric), 1))))
    axes = []
    for name in names:
        dim = space[name]
        if dim.scale == "choice":
            axes.append(dim.choices)
        else:
            lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
            t = lo + (np.arange(k) + 0.5) * (hi - lo) / k
            axes.append(list(dict.fromkeys(finish(name, dim, v) for v in from_scale(dim, t))))
    return [dict(zip(names, point)) for point in itertools.product(*axes)]


# ----------------------------------------------------------------------------- TPE


def _fits(params: dict[str, Any], dists: dict[str, Any]) -> bool:
    """Whether a trial can be modelled over ``dists``: it has every name, and its choices
    are still among a narrowed dimension's choices (numbers may lie outside the range)."""
    return all(
        name in params
        and (
            not isinstance(dist, optuna.distributions.CategoricalDistribution)
            or params[name] in dist.choices
        )
        for name, dist in dists.items()
    )


def latest_enough(
    earlier: Earlier, dists: dict[str, Any]
) -> tuple[list[tuple[dict, float, dict]], int] | None:
    """The finished trials of the latest earlier stage with at least ``len(dists) + 2`` of
    them that fit ``dists``, and that stage's index; None when no stage has as many.

    ``earlier[k]``: stage k's finished trials as (params, value, distributions) triples.
    """
    for k in range(len(earlier) - 1, -1, -1):
        fit = [t for t in earlier[k] if _fits(t[0], dists)]
        if len(fit) >= len(dists) + 2:
            return fit, k
    return None


def _tpe_model(observed, running, seed: int, startup: int, multivariate: bool):
    """An in-memory study whose TPE sampler (constant liar) has seen ``observed`` finished
    (params, value, distributions) triples and the ``running`` trials as pending."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            constant_liar=True, multivariate=multivariate, n_startup_trials=startup, seed=seed
        )
    model = optuna.create_study(direction="maximize", sampler=sampler)
    model.add_trials(
        [optuna.trial.create_trial(params=p, distributions=d, value=v) for p, v, d in observed]
        + [
            optuna.trial.create_trial(
                state=TrialState.RUNNING, params=t.params, distributions=t.distributions
            )
            for t in running
            if t.params
        ]
    )
    return model


def propose_tpe(
    study, dists: dict[str, Any], earlier: Earlier, seed: int, startup: int
) -> tuple[dict[str, Any], int | None]:
    """A TPE proposal for the next slot of ``study`` (stage ``len(earlier)``), and the stage
    whose trials it modelled (None: a random start-up trial).

    The model (TPE, constant liar) is fitted in memory to one stage's finished trials: this
    stage's own once it has ``max(len(dists) + 2, startup)`` of them, before that the latest
    earlier stage with at least ``len(dists) + 2`` (``latest_enough``); earlier stages
    trained fewer epochs, so their accuracies are never mixed with this stage's (BOHB's rule:
    model the largest budget with enough observations). This stage's RUNNING trials are
    the pending ones. Own trials share this stage's range and are modelled jointly
    (multivariate TPE); an earlier stage's span a wider range than the one sampled, so they
    are modelled one hyperparameter at a time. Only a stage with no earlier stage to model
    begins with ``startup`` random trials.
    """
    own, running = [], []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.state == TrialState.RUNNING:
            running.append(t)
        elif "result" in t.user_attrs:
            own.append((t.params, t.value, t.distributions))
    prior = latest_enough(earlier, dists)
    if prior is None or len(own) >= max(len(dists) + 2, startup):
        observed, source = own, len(earlier)
    else:
        observed, source = prior
    startup_trials = startup if prior is None else 0
    model = _tpe_model(observed, running, seed, startup_trials, source == len(earlier))
    if prior is None and len(own) < startup:
        source = None
    return model.ask(dists).params, source


# ----------------------------------------------------------------------------- registry

# propose(study, distributions, earlier, seed, startup) -> (params, modelled stage or None)
Propose = Callable[[Any, dict, Earlier, int, int], tuple[dict[str, Any], "int | None"]]


class Sampler(NamedTuple):
    """One ``search.sampler``: what differs between samplers, and nothing else.

    ``plan(space, num, seed)``: a stage's slots, slot i's fixed params (``{}`` where
    ``propose`` gives them when the slot is claimed); ``seed`` is ``[search.seed, stage]``.
    ``propose``: a claimed slot's params (see :func:`propose_tpe`); None when every slot
    carries its params from ``plan``.
    """

    name: str
    plan: Callable[[Space, int, Sequence[int]], list[dict[str, Any]]]
    propose: Propose | None = None

    def num_slots(self, space: Space, num: int) -> int:
        """How many slots a stage of ``num`` trials over ``space`` has (a grid rounds to a
        full grid)."""
        return len(self.plan(space, num, (0,)))


def replicas(params: dict[str, Any]) -> Sampler:
    """Every slot ``params`` (a stage of one configuration, each slot with its own seed)."""
    return Sampler("replicas", plan=lambda space, num, seed: [dict(params) for _ in range(num)])


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("random", plan=sample_random),
        Sampler("grid", plan=lambda space, num, seed: sample_grid(space, num)),
        Sampler("tpe", plan=lambda space, num, seed: [{}] * num, propose=propose_tpe),
    )
}
