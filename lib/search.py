"""Hyperparameter search: search spaces, samplers, coarse-to-fine narrowing, border checks.

A search space maps hyperparameter names (``train.HPARAMS`` plus the structural ``hidden``,
``num_epochs``, ``optimizer``) to a :class:`Dim`: a range on a ``log`` or ``linear`` scale,
or a tuple of choices. Random search draws each value independently, exactly as the notes:

    learning_rate = 10 ** uniform(log10(low), log10(high))      (log scale)

``run_search(config, workdir)`` drives a sweep: each batch of trials of one shape is one
vmapped, sharded ``train.fit`` (``lib.sharding``); the trials live in an Optuna study in the
workdir, so rerunning the same command resumes it.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import shutil
import socket
import time
import uuid
from typing import Any, Mapping, NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402

from lib import checkpoints, metrics, sharding, train  # noqa: E402

STRUCTURAL = ("hidden", "num_epochs", "optimizer")  # change the program: one batch per value
INTEGER = ("hidden", "num_epochs")
SCALES = ("log", "linear")
SAMPLERS = ("random", "grid", "tpe")
EDGE = 0.1  # the outer tenth of a range (on its scale) is its border

# Where each searchable name lives in a training config (for the best trial's overrides).
CONFIG_PATHS = {
    "learning_rate": "optimizer.learning_rate", "mu": "optimizer.mu",
    "beta1": "optimizer.beta1", "beta2": "optimizer.beta2",
    "decay_rate": "optimizer.decay_rate", "eps": "optimizer.eps",
    "damping": "optimizer.damping", "reg": "loss.reg", "dropout": "model.dropout",
    "lr_decay": "schedule.decay", "lr_k": "schedule.k", "ema_decay": "train.ema_decay",
    "hidden": "model.hidden", "num_epochs": "train.num_epochs", "optimizer": "optimizer.name"}


class Dim(NamedTuple):
    """One dimension of a search space: ``[low, high]`` on ``scale``, or ``choices``."""

    low: float | None = None
    high: float | None = None
    scale: str = "log"      # "log" | "linear" | "choice"
    choices: tuple = ()


Space = dict[str, Dim]


def valid_names() -> tuple[str, ...]:
    """Every name a search space may use."""
    return tuple(train.HPARAMS) + STRUCTURAL


def stages_from_config(stages: str | Sequence | None, num_trials: int,
                       num_epochs: int) -> list[tuple[int, int]]:
    """``"64x1,16x5,4x20"`` (or ``[(64, 1), ...]``) -> ``[(trials, epochs), ...]``.

    Empty means one stage of ``num_trials`` trials of ``num_epochs`` epochs.
    """
    if not stages:
        pairs = [(num_trials, num_epochs)]
    elif isinstance(stages, str):
        try:
            pairs = [tuple(int(v) for v in part.lower().split("x"))
                     for part in stages.replace(" ", "").split(",")]
        except ValueError:
            pairs = [()]
    else:
        pairs = [tuple(p) for p in stages]
    if any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise ValueError(f"search.stages={stages!r} is not a list of TRIALSxEPOCHS with "
                         "positive integers; write it like --config.search.stages=64x1,16x5,4x20")
    return [(int(n), int(e)) for n, e in pairs]


def space_from_config(space: Mapping[str, Any]) -> Space:
    """Parses ``search.space`` (name -> {low, high, scale} or {choices}) and checks its form.

    Raises:
      ValueError: an unknown name (the valid ones are listed), a malformed entry, low >= high,
        a log scale with low <= 0.
    """
    space = space.to_dict() if hasattr(space, "to_dict") else dict(space)
    if not space:
        raise ValueError("search.space is empty; add at least one entry, e.g. "
                         "search.space.learning_rate = dict(low=1e-4, high=1, scale='log')")
    out = {}
    for name, entry in space.items():
        where = f"search.space.{name}"
        if name not in valid_names():
            raise ValueError(f"unknown hyperparameter {where}; valid names: "
                             f"{', '.join(valid_names())}")
        entry = entry.to_dict() if hasattr(entry, "to_dict") else entry
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a dict with low, high, scale or with choices, "
                             f"got {entry!r}")
        extra = set(entry) - {"low", "high", "scale", "choices"}
        if extra:
            raise ValueError(f"{where} has unknown fields {sorted(extra)}; use low, high, "
                             "scale ('log' or 'linear') or choices")
        if entry.get("choices") is not None:
            choices = tuple(entry["choices"])
            if not choices or len(set(choices)) != len(choices):
                raise ValueError(f"{where}.choices={choices!r} must be a non-empty list of "
                                 "distinct values")
            out[name] = Dim(scale="choice", choices=choices)
            continue
        if name == "optimizer":
            raise ValueError(f"{where} needs choices (a list of names), e.g. "
                             f"choices=('sgd', 'adam'); valid: {', '.join(train.optimizers())}")
        low, high, scale = entry.get("low"), entry.get("high"), entry.get("scale", "log")
        if low is None or high is None:
            raise ValueError(f"{where} needs both low and high (or choices)")
        if scale not in SCALES:
            raise ValueError(f"{where}.scale={scale!r} is not one of {', '.join(SCALES)}")
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"{where}: low={low:g} must be finite and below high={high:g}; "
                             f"swap or correct --config.{where}.low/high")
        if scale == "log" and low <= 0:
            raise ValueError(f"{where}: a log scale needs low > 0, got low={low:g}; set "
                             f"--config.{where}.low to a positive value or use scale='linear'")
        out[name] = Dim(low, high, scale)
    return out


def check_space(space: Space, setup: train.Setup, stages: Sequence[tuple[int, int]]) -> None:
    """Checks every value the space can produce against ``train.validate``'s ranges."""
    for name, dim in space.items():
        where = f"search.space.{name}"
        values = dim.choices if dim.scale == "choice" else (dim.low, dim.high)
        if name == "optimizer":
            bad = [v for v in values if v not in train.optimizers()]
            if bad:
                raise ValueError(f"{where}: unknown optimizers {bad}; valid: "
                                 f"{', '.join(train.optimizers())}")
        elif name in INTEGER:
            if any(float(v) < 1 or float(v) != int(v) for v in values):
                raise ValueError(f"{where}: {name} takes positive integers, got {values}")
        else:
            for v in values:
                try:
                    train.validate(setup, {name: v})
                except ValueError as e:
                    raise ValueError(f"{where}: {e}; narrow the range") from None
        if name in ("hidden", "dropout") and setup.model != "two_layer":
            raise ValueError(f"{where}: the {setup.model} model has no {name}; remove it from "
                             "the space or set --config.model.name=two_layer")
    if "num_epochs" in space and len(stages) > 1:
        raise ValueError("search.space.num_epochs conflicts with search.stages (each stage "
                         "sets its epochs); remove one of them")


# ----------------------------------------------------------------------------- scales


def to_scale(dim: Dim, value) -> np.ndarray:
    """A value on the dimension's own scale: log10 for ``log``, itself for ``linear``."""
    value = np.asarray(value, np.float64)
    return np.log10(value) if dim.scale == "log" else value


def from_scale(dim: Dim, t) -> np.ndarray:
    t = np.asarray(t, np.float64)
    return 10.0 ** t if dim.scale == "log" else t


def _finish(name: str, dim: Dim, value: float):
    """Clips into [low, high] (undoing float round-off) and rounds integer names."""
    value = float(np.clip(value, dim.low, dim.high))
    return int(round(value)) if name in INTEGER else value


def sample_random(space: Space, num: int, seed: int | Sequence[int]) -> list[dict[str, Any]]:
    """``num`` independent draws; row i comes from its own generator ``[*seed, i]``.

    Log scale: ``10 ** uniform(log10 low, log10 high)``; linear: ``uniform(low, high)``;
    choices: uniformly one of them. Row i does not depend on ``num``.
    """
    seed = list(np.atleast_1d(seed).astype(int))
    rows = []
    for i in range(num):
        rng = np.random.default_rng([*seed, i])
        row = {}
        for name in sorted(space):
            dim = space[name]
            if dim.scale == "choice":
                row[name] = dim.choices[int(rng.integers(len(dim.choices)))]
            elif dim.scale == "log":
                row[name] = _finish(name, dim, 10 ** rng.uniform(math.log10(dim.low),
                                                                 math.log10(dim.high)))
            else:
                row[name] = _finish(name, dim, rng.uniform(dim.low, dim.high))
        rows.append(row)
    return rows


def sample_grid(space: Space, num: int) -> list[dict[str, Any]]:
    """A full grid of about ``num`` points: every choice, and k points per numeric
    dimension at the cell centres ``low + (i + 1/2) (high - low) / k`` on its scale, with
    ``k = max(1, round((num / #choice combinations) ** (1 / #numeric dims)))``."""
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
            axes.append([_finish(name, dim, v) for v in from_scale(dim, t)])
    return [dict(zip(names, point)) for point in itertools.product(*axes)]


def structure(row: Mapping[str, Any]) -> tuple:
    """The structural part of a trial (trials with equal structure share one program)."""
    return tuple((n, row[n]) for n in STRUCTURAL if n in row)


def top_indices(scores: Sequence[float], fraction: float) -> np.ndarray:
    """Indices of the best ``max(1, ceil(fraction * n))`` scores, best first."""
    scores = np.asarray(scores, np.float64)
    k = max(1, math.ceil(fraction * len(scores)))
    return np.argsort(-scores, kind="stable")[:k]


def narrow(space: Space, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
           top_fraction: float) -> Space:
    """The next stage's space: each range shrunk around the best ``top_fraction`` trials.

    On each dimension's scale the new range is the span [a, b] of the top trials' values,
    padded by ``max((b - a) / 4, (high - low) / 20)`` on each side and clipped to the old
    range (so it never grows); choices keep those the top trials used.
    """
    if not rows:
        raise ValueError("cannot narrow a search space without finished trials")
    top = [rows[i] for i in top_indices(scores, top_fraction)]
    out = {}
    for name, dim in space.items():
        if dim.scale == "choice":
            used = {r[name] for r in top}
            out[name] = dim._replace(choices=tuple(c for c in dim.choices if c in used))
            continue
        lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
        t = to_scale(dim, [r[name] for r in top])
        pad = max((t.max() - t.min()) / 4, (hi - lo) / 20)
        new_lo, new_hi = from_scale(dim, [max(lo, t.min() - pad), min(hi, t.max() + pad)])
        new_lo, new_hi = max(float(new_lo), dim.low), min(float(new_hi), dim.high)
        if name in INTEGER:
            new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
        out[name] = dim._replace(low=new_lo, high=new_hi)
    return out


def border_warnings(space: Space, rows: Sequence[Mapping[str, Any]],
                    scores: Sequence[float], setup: train.Setup | None = None) -> list[str]:
    """One message per numeric hyperparameter whose best values lie in the outer tenth of
    its range (on its scale), naming the side and suggesting a wider bound.

    "Best values": the median (on the scale) of the top tenth of the trials (at least one).
    """
    if not rows:
        return []
    best = [rows[i] for i in top_indices(scores, 0.1)]
    warnings = []
    for name in sorted(space):
        dim = space[name]
        if dim.scale == "choice":
            continue
        lo, hi = to_scale(dim, dim.low), to_scale(dim, dim.high)
        if not hi > lo:
            continue
        u = (np.median(to_scale(dim, [r[name] for r in best])) - lo) / (hi - lo)
        if EDGE <= u <= 1 - EDGE:
            continue
        side, bound = ("low", "low") if u < EDGE else ("high", "high")
        suggest = float(from_scale(dim, lo - (hi - lo) / 2 if side == "low"
                                   else hi + (hi - lo) / 2))
        message = (f"{name}: the best trials lie at the {side} border of its range "
                   f"[{dim.low:.3g}, {dim.high:.3g}] (outer tenth on a {dim.scale} scale); ")
        if _allowed(name, suggest, setup):
            message += (f"widen it, e.g. --config.search.space.{name}.{bound}="
                        f"{_round(name, suggest):.3g}")
        else:
            message += f"the range already reaches the limit of valid {name} values"
        warnings.append(message)
    return warnings


def _round(name: str, value: float):
    return max(1, round(value)) if name in INTEGER else value


def _allowed(name: str, value: float, setup: train.Setup | None) -> bool:
    if name in INTEGER:
        return round(value) >= 1
    try:
        train.validate(setup or train.Setup(1, 2), {name: value})
    except ValueError:
        return False
    return True


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distribution of each dimension (for the study's record and for TPE)."""
    import optuna  # noqa: PLC0415  (only the driver needs optuna)
    out = {}
    for name, dim in space.items():
        if dim.scale == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(dim.choices)
        elif name in INTEGER:
            out[name] = optuna.distributions.IntDistribution(
                int(dim.low), int(dim.high), log=dim.scale == "log")
        else:
            out[name] = optuna.distributions.FloatDistribution(
                dim.low, dim.high, log=dim.scale == "log")
    return out


def space_to_json(space: Space) -> dict[str, dict]:
    return {n: ({"choices": list(d.choices)} if d.scale == "choice" else
                {"low": d.low, "high": d.high, "scale": d.scale}) for n, d in space.items()}


def space_from_json(obj: Mapping[str, Mapping]) -> Space:
    return {n: (Dim(scale="choice", choices=tuple(e["choices"])) if "choices" in e else
                Dim(e["low"], e["high"], e["scale"])) for n, e in obj.items()}


def plot_trials(trials: Sequence[Mapping[str, Any]], space: Space, path: str) -> None:
    """The notes' picture: train and val accuracy of every finished trial over
    (learning rate, reg) on log axes, coloured by accuracy. Without both names in the
    space: val accuracy against each numeric hyperparameter instead."""
    ok = [t for t in trials if t["status"] == "complete"]
    numeric = [n for n in sorted(space) if space[n].scale != "choice"]
    if "learning_rate" in space and "reg" in space and "choice" not in (
            space["learning_rate"].scale, space["reg"].scale):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        lr = [t["hparams"]["learning_rate"] for t in ok]
        reg = [t["hparams"]["reg"] for t in ok]
        for ax, key in zip(axes, ("train_accuracy", "val_accuracy")):
            sc = ax.scatter(lr, reg, c=[t[key] for t in ok], cmap="viridis", s=30)
            ax.set(xscale=space["learning_rate"].scale, yscale=space["reg"].scale,
                   xlabel="learning rate", ylabel="reg", title=key.replace("_", " "))
            fig.colorbar(sc, ax=ax)
    else:
        fig, axes = plt.subplots(1, max(len(numeric), 1), figsize=(5 * max(len(numeric), 1), 4),
                                 squeeze=False)
        for ax, name in zip(axes[0], numeric):
            ax.scatter([t["hparams"][name] for t in ok], [t["val_accuracy"] for t in ok], s=20)
            ax.set(xscale=space[name].scale, xlabel=name, ylabel="val accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver

_RESUMABLE_CHANGES = ("search.stages", "search.num_trials", "search.trials_per_batch")


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _check_config(config: Any, workdir: str) -> dict:
    """Parses and validates everything before the workdir is touched; returns the plan."""
    s = config.search
    if s.sampler not in SAMPLERS:
        raise ValueError(f"unknown search.sampler {s.sampler!r}; valid: {', '.join(SAMPLERS)}")
    for name, ok in (("trials_per_batch", int(s.trials_per_batch) >= 1),
                     ("num_trials", int(s.num_trials) >= 1),
                     ("top_fraction", 0 < float(s.top_fraction) <= 1)):
        if not ok:
            raise ValueError(f"search.{name}={s[name]!r} is out of range: trials_per_batch and "
                             "num_trials must be >= 1, top_fraction in (0, 1]")
    space = space_from_config(s.space)
    stages = stages_from_config(s.get("stages"), int(s.num_trials), int(config.train.num_epochs))
    dataset = train.load_data(config)
    setup = train.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = train.hparams_from_config(config)
    train.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    check_space(space, setup, stages)
    config_dict = config.to_dict()
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        old, new = _flatten(metrics.read_json(path)), _flatten(metrics._plain(config_dict))
        diff = sorted(k for k in set(old) | set(new)
                      if k not in _RESUMABLE_CHANGES and old.get(k) != new.get(k))
        if diff:
            changes = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ValueError(f"workdir {workdir!r} holds a sweep with a different config "
                             f"({changes}); rerun with the same config to resume it, or "
                             "choose a new --workdir")
    return dict(space=space, stages=stages, dataset=dataset, setup=setup, hparams=hparams,
                config_dict=config_dict)


def open_storage(storage: str | None, workdir: str):
    """An RDB URL as given, or (default) a journal file ``<workdir>/study.journal``."""
    import optuna  # noqa: PLC0415
    if storage:
        return storage
    backend = optuna.storages.journal.JournalFileBackend(os.path.join(workdir, "study.journal"))
    return optuna.storages.JournalStorage(backend)


def _check_stages(storage, study_name: str, stages: Sequence[tuple[int, int]]) -> None:
    """Refuses to resume a study whose stored stages ran a different number of epochs."""
    import optuna  # noqa: PLC0415
    names = {st.study_name: st.user_attrs for st in optuna.get_all_study_summaries(storage)}
    for stage, (_, num_epochs) in enumerate(stages):
        old = names.get(f"{study_name}.stage{stage}", {}).get("num_epochs", num_epochs)
        if old != num_epochs:
            raise ValueError(
                f"stage {stage} of this study ran {old} epochs, search.stages now asks "
                f"{num_epochs}; keep the finished stages as they were (only append stages or "
                "add trials) or choose a new --workdir")


def _owner_alive(owner: str, me: str) -> bool:
    """Whether the process that left a trial RUNNING may still be working on it."""
    host, pid, token = (owner.split(":") + ["", "", ""])[:3]
    my_host, my_pid, my_token = me.split(":")
    if host != my_host:
        return True  # another machine sharing the study: leave its trials alone
    if pid == my_pid:
        return token == my_token
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def _recover(study, me: str) -> int:
    """Marks FAILED the trials an interrupted run left WAITING or RUNNING; returns how many."""
    from optuna.trial import TrialState  # noqa: PLC0415
    count = 0
    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.tell(study.ask(), state=TrialState.FAIL)
        count += 1
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_alive(t.user_attrs.get("owner", ""), me):
            study.tell(t.number, state=TrialState.FAIL)
            count += 1
    return count


def _trial_seed(seed: int, stage: int, slot: int) -> int:
    return int(np.random.SeedSequence([seed, stage, slot]).generate_state(1)[0] >> 1)


def _setup_for(base: train.Setup, row: Mapping[str, Any], num_epochs: int) -> train.Setup:
    return dataclasses.replace(
        base, num_epochs=int(row.get("num_epochs", num_epochs)),
        hidden=int(row.get("hidden", base.hidden)), optimizer=row.get("optimizer", base.optimizer))


def _record(stage: int, t) -> dict[str, Any]:
    """A finished trial as a plain dict (trials.csv row, summary entries)."""
    return {"stage": stage, "trial": t.number, "slot": t.user_attrs["slot"],
            "hparams": dict(t.params), "value": t.value, **t.user_attrs["result"]}


def _run_batch(items, num_epochs: int, ctx: dict) -> list[dict]:
    """Trains asked trials ``items`` ([(trial, slot, row)], one structure) in one program."""
    setup = _setup_for(ctx["setup"], items[0][2], num_epochs)
    rows = [{**ctx["hparams"], **{k: v for k, v in row.items() if k in train.HPARAMS}}
            for _, _, row in items]
    seeds = [_trial_seed(ctx["seed"], ctx["stage"], slot) for _, slot, _ in items]
    # Lanes: a power of two, at least a quarter of the stage's batch (few distinct shapes,
    # so few compiles), at most the batch.
    full = min(ctx["batch"], ctx["stage_trials"])
    lanes = min(full, max(1 << (len(items) - 1).bit_length(), full // 4))
    t0 = time.perf_counter()
    state, history = sharding.fit_trials(seeds, rows, ctx["data"], setup, ctx["mesh"], lanes)
    share = (time.perf_counter() - t0) / len(items)
    diverged = sharding.diverged(history)
    out = []
    for j, (trial, slot, _) in enumerate(items):
        div_epoch = (int(np.argmin(np.isfinite(history["train_loss"][j]))) + 1
                     if diverged[j] else None)
        result = {"status": "diverged" if diverged[j] else "complete", "seed": seeds[j],
                  "num_epochs": setup.num_epochs, "seconds": share, "diverged_epoch": div_epoch,
                  "train_accuracy": float(history["train_accuracy"][j, -1]),
                  "val_accuracy": float(history["val_accuracy"][j, -1]),
                  "val_accuracy_per_epoch": [float(v) for v in history["val_accuracy"][j]]}
        out.append({"trial": trial, "slot": slot, "result": result, "setup": setup,
                    "params": sharding.trial_params(state, j)})
    return out


def _run_stage(study, stage: int, space: Space, num: int, num_epochs: int, ctx: dict) -> int:
    """Runs the stage's unfinished slots batch by batch; returns how many trials ran."""
    from optuna.trial import TrialState  # noqa: PLC0415
    ctx["stage"] = stage
    dists = distributions(space)
    plan = None
    if ctx["sampler"] == "random":
        plan = sample_random(space, num, [ctx["seed"], stage])
    elif ctx["sampler"] == "grid":
        plan = sample_grid(space, num)
        num = len(plan)
    ctx["stage_trials"] = num
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    taken = {t.user_attrs.get("slot") for t in trials}
    pending = [i for i in range(num) if i not in taken]
    if plan is not None:  # one structure per batch, batches of at most ctx["batch"]
        pending.sort(key=lambda i: repr(structure(plan[i])))
        batches = [list(g) for _, g in itertools.groupby(pending, lambda i: structure(plan[i]))]
        batches = [g[i:i + ctx["batch"]] for g in batches for i in range(0, len(g), ctx["batch"])]
    else:
        batches = [pending[i:i + ctx["batch"]] for i in range(0, len(pending), ctx["batch"])]
    ran = 0
    for slots in batches:
        asked = []
        for slot in slots:
            if plan is not None:
                study.enqueue_trial(plan[slot])
            trial = study.ask(dists)
            trial.set_user_attr("slot", slot)
            trial.set_user_attr("owner", ctx["owner"])
            asked.append((trial, slot, trial.params))
        groups: dict[tuple, list] = {}
        for item in asked:
            groups.setdefault(structure(item[2]), []).append(item)
        done = [r for items in groups.values() for r in _run_batch(items, num_epochs, ctx)]
        if ctx["callback"] is not None:
            ctx["callback"](stage, [{"slot": r["slot"], **r["result"]} for r in done])
        for r in done:
            value = r["result"]["val_accuracy"] if r["result"]["status"] == "complete" else 0.0
            r["trial"].set_user_attr("result", r["result"])
            study.tell(r["trial"], value)
            best = ctx["best_params"].get(stage)
            if best is None or value > best[0]:
                ctx["best_params"][stage] = (value, r["trial"].number, r["params"], r["setup"])
        ran += len(done)
        logging.info("stage %d: %d trials of %d epochs done, best val acc %.4f", stage,
                     len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                     num_epochs, study.best_value)
    return ran


def run_search(config: Any, workdir: str, callback=None) -> dict[str, Any]:
    """Runs (or resumes) the sweep a config describes and writes its workdir.

    Stage s trains ``stages[s]`` = (trials, epochs) in batches: each batch holds trials of
    one structure and is one ``jax.vmap(train.fit)`` sharded over the local devices. Stage
    s + 1 samples inside ``narrow(space_s, ...)``. Every trial is stored in the Optuna study
    ``<search.study_name>.stage<s>`` (journal file in the workdir by default); a rerun skips
    finished trials and re-runs those an interrupted run left RUNNING.

    Args:
      config: a training config plus a ``search`` block (see configs/digits_sweep.py).
      workdir: where config.json, study.journal, trials.csv, summary.json, search.png,
        best_hparams.json and best_params/ (orbax) go.
      callback: optional ``callback(stage, results)`` called after each batch has trained
        and before it is stored (raising from it interrupts the sweep mid-batch).

    Returns:
      the summary written to summary.json.
    """
    import optuna  # noqa: PLC0415
    start = time.perf_counter()
    plan = _check_config(config, workdir)  # raises before anything is written
    s = config.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if s.get("storage") or os.path.exists(os.path.join(workdir, "study.journal")):
        _check_stages(open_storage(s.get("storage"), workdir), s.study_name, plan["stages"])
    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), plan["config_dict"])
    storage = open_storage(s.get("storage"), workdir)
    mesh = sharding.trial_mesh()
    ctx = {"setup": plan["setup"], "hparams": plan["hparams"], "seed": int(s.seed),
           "batch": sharding.padded_size(int(s.trials_per_batch), mesh.size), "mesh": mesh,
           "data": sharding.replicate(train.to_device(plan["dataset"]), mesh),
           "sampler": s.sampler, "callback": callback, "best_params": {},
           "owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"}
    space, stage_summaries, warnings, records = plan["space"], [], [], []
    ran = interrupted = 0
    train_seconds = 0.0
    for stage, (num, num_epochs) in enumerate(plan["stages"]):
        sampler = (optuna.samplers.TPESampler(constant_liar=True, multivariate=True,
                                              seed=int(s.seed) + stage)
                   if s.sampler == "tpe" else optuna.samplers.RandomSampler(int(s.seed) + stage))
        study = optuna.create_study(storage=storage, study_name=f"{s.study_name}.stage{stage}",
                                    sampler=sampler, direction="maximize", load_if_exists=True)
        if "space" in study.user_attrs:  # the stage's space as first created is authoritative
            space = space_from_json(study.user_attrs["space"])
        else:
            study.set_user_attr("space", space_to_json(space))
            study.set_user_attr("num_epochs", num_epochs)
        interrupted += _recover(study, ctx["owner"])
        t0 = time.perf_counter()
        ran += _run_stage(study, stage, space, num, num_epochs, ctx)
        train_seconds += time.perf_counter() - t0
        finished = sorted((t for t in study.get_trials(deepcopy=False)
                           if t.state == optuna.trial.TrialState.COMPLETE),
                          key=lambda t: t.user_attrs["slot"])
        stage_records = [_record(stage, t) for t in finished]
        records += stage_records
        rows, scores = [r["hparams"] for r in stage_records], [r["value"] for r in stage_records]
        stage_warnings = [f"stage {stage}: {w}" for w in border_warnings(space, rows, scores,
                                                                          plan["setup"])]
        if all(r["status"] == "diverged" for r in stage_records):
            stage_warnings.append(
                f"stage {stage}: all {len(stage_records)} trials diverged (NaN/inf loss); "
                "lower the learning-rate range, e.g. --config.search.space.learning_rate.high")
        for w in stage_warnings:
            logging.warning("%s", w)
        warnings += stage_warnings
        best = max(stage_records, key=lambda r: (r["value"], -r["trial"]))
        stage_summaries.append({
            "num_trials": len(stage_records), "num_epochs": num_epochs,
            "space": space_to_json(space), "border_warnings": stage_warnings,
            "diverged": sum(r["status"] == "diverged" for r in stage_records),
            "best": {k: best[k] for k in ("trial", "hparams", "val_accuracy", "train_accuracy")}})
        if stage + 1 < len(plan["stages"]):
            space = narrow(space, rows, scores, float(s.top_fraction))
    best_params, best_setup = _best_params(workdir, best, stage_summaries, ctx)
    dataset = plan["dataset"]
    test_acc = float(train.accuracy(best_params, dataset.x_test, dataset.y_test, best_setup))
    _write_best(workdir, best, test_acc)
    _write_csv(os.path.join(workdir, "trials.csv"), records, plan["space"])
    plot_trials(records, plan["space"], os.path.join(workdir, "search.png"))
    summary = {
        "num_trials": len(records), "stages": stage_summaries, "border_warnings": warnings,
        "best": {"hparams": best["hparams"], "val_accuracy": best["val_accuracy"],
                 "train_accuracy": best["train_accuracy"], "stage": best["stage"],
                 "trial": best["trial"], "seed": best["seed"], "num_epochs": best["num_epochs"]},
        "train_accuracy": best["train_accuracy"], "val_accuracy": best["val_accuracy"],
        "test_accuracy": test_acc, "trials_run": ran, "interrupted_trials": interrupted,
        "trials_per_second": ran / train_seconds if ran else None, "sampler": s.sampler,
        "devices": mesh.size, "seconds": time.perf_counter() - start}
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    logging.info("best (stage %d, trial %d): val acc %.4f  test acc %.4f  %s", best["stage"],
                 best["trial"], best["val_accuracy"], test_acc, best["hparams"])
    return summary


def _best_params(workdir: str, best: dict, stages: list, ctx: dict):
    """The best trial's params: from best_params/ if saved, from this run's memory, or
    retrained (a finished trial is deterministic in its seed and hparams)."""
    path, info = os.path.join(workdir, "best_params"), os.path.join(workdir, "best_hparams.json")
    setup = _setup_for(ctx["setup"], best["hparams"], best["num_epochs"])
    ident = {"stage": best["stage"], "trial": best["trial"]}
    if (os.path.exists(info) and metrics.read_json(info).get("trial") == ident
            and checkpoints.steps(path)):
        like = jax.eval_shape(lambda: train.init_params(jax.random.key(0), setup))
        return checkpoints.restore(path, 0, like=like), setup
    kept = ctx["best_params"].get(best["stage"])
    if kept is not None and kept[1] == best["trial"]:
        params = kept[2]
    else:
        row = {**ctx["hparams"], **{k: v for k, v in best["hparams"].items()
                                    if k in train.HPARAMS}}
        state, _ = sharding.fit_trials([best["seed"]], [row], ctx["data"], setup, ctx["mesh"])
        params = sharding.trial_params(state, 0)
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoints.save(tmp, 0, params)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    if os.path.exists(info):
        os.remove(info)  # rewritten by _write_best once the new params are in place
    return params, setup


def _write_best(workdir: str, best: dict, test_accuracy: float) -> None:
    values = {**best["hparams"], "num_epochs": best["num_epochs"]}
    overrides = {CONFIG_PATHS[k]: v for k, v in values.items()}
    metrics.write_json(os.path.join(workdir, "best_hparams.json"), {
        "trial": {"stage": best["stage"], "trial": best["trial"]}, "hparams": best["hparams"],
        "seed": best["seed"], "val_accuracy": best["val_accuracy"],
        "train_accuracy": best["train_accuracy"], "test_accuracy": test_accuracy,
        "overrides": overrides,
        "flags": " ".join(f"--config.{k}={v}" for k, v in sorted(overrides.items()))})


def _write_csv(path: str, records: list[dict], space: Space) -> None:
    names = sorted(space)
    cols = ["stage", "trial", "slot", "status", "seed", "num_epochs", *names,
            "train_accuracy", "val_accuracy", "seconds", "diverged_epoch",
            "val_accuracy_per_epoch"]
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in records:
            writer.writerow([r["stage"], r["trial"], r["slot"], r["status"], r["seed"],
                             r["num_epochs"], *(r["hparams"][n] for n in names),
                             r["train_accuracy"], r["val_accuracy"], r["seconds"],
                             "" if r["diverged_epoch"] is None else r["diverged_epoch"],
                             " ".join(f"{v:.4f}" for v in r["val_accuracy_per_epoch"])])
    os.replace(path + ".tmp", path)
