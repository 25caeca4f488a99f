"""Hyperparameter search: runs a study over a search space (``lib.space``), resumably.

``run_search(config, workdir)`` drives a sweep: each batch of trials of one shape is one
vmapped, sharded ``train.fit`` (``lib.sharding``). Each trial has its own seed (its
initialisation and dropout) but every trial of a study draws its minibatches in the same
order, from ``search.seed``: trials differ only in what the search varies (common random
numbers), and each minibatch is gathered once for the whole batch, whose products become one
wide matrix product. The trials live in an Optuna study in the workdir (``lib.study``:
storage, resume checks, recovery, sharing one study between processes), so rerunning the
same command resumes it. Stage s + 1 samples inside the range the best complete trials of
stage s narrowed (coarse to fine). A stage is claimed, trained and told batch by batch
(``search.trials_per_batch``), so TPE models each batch on those told before it, and a later
stage from its first trial on the earlier stage's (``lib.study``). The best
trial is the best complete one of the last stage that has any. Outputs: trials.csv,
summary.json, search.png, best_hparams.json and the best trial's params (orbax).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import time
import uuid
from typing import Any, Mapping, NamedTuple

from absl import logging
import jax
import numpy as np
import optuna

from lib import checkpoints, interrupt, metrics, plots, settings, sharding, study as studies
from lib import sweep_report as report, train
from lib.space import (
    Space,
    check_space,
    distributions,
    narrow,
    sample_grid,
    sample_random,
    space_from_config,
    space_from_json,
    space_to_json,
    stages_from_config,
    structure,
)

SAMPLERS = ("random", "grid", "tpe")
_RESUMABLE_CHANGES = (
    "search.stages",
    "search.num_trials",
    "search.trials_per_batch",
    "search.tpe_startup",
)


def _check_config(config: Any, workdir: str) -> dict:
    """Parses and validates everything before the workdir is touched; returns the plan."""
    s = config.search
    if s.sampler not in SAMPLERS:
        raise ValueError(f"unknown search.sampler {s.sampler!r}; valid: {', '.join(SAMPLERS)}")
    for name, ok in (
        ("trials_per_batch", int(s.trials_per_batch) >= 1),
        ("num_trials", int(s.num_trials) >= 1),
        ("top_fraction", 0 < float(s.top_fraction) <= 1),
        ("tpe_startup", int(s.get("tpe_startup", 10)) >= 1),
    ):
        if not ok:
            raise ValueError(
                f"search.{name}={s[name]!r} is out of range: trials_per_batch and "
                "num_trials and tpe_startup must be >= 1, top_fraction in (0, 1]"
            )
    space = space_from_config(s.space)
    stages = stages_from_config(s.get("stages"), int(s.num_trials), int(config.train.num_epochs))
    dataset = settings.load_data(config)
    setup = settings.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = settings.hparams_from_config(config)
    settings.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    check_space(space, setup, stages)
    config_dict = config.to_dict()
    metrics.check_config(workdir, config_dict, "sweep", resumable=_RESUMABLE_CHANGES)
    return dict(
        space=space,
        stages=stages,
        dataset=dataset,
        setup=setup,
        hparams=hparams,
        config_dict=config_dict,
    )


class Stage(NamedTuple):
    """One stage of a sweep, built once: its study, range, slots and epochs."""

    index: int
    study: Any  # optuna.Study
    space: Space
    plan: list[dict[str, Any]]  # slot i's fixed params; {} where TPE proposes them
    num_epochs: int


def _open_stage(storage, index: int, space: Space, num: int, num_epochs: int, ctx: dict) -> Stage:
    """The stage's study (created on first use, with its range and epochs; the range it was
    first created with is authoritative) and its slots, planned in the study."""
    study = studies.open_stage(storage, ctx["study_name"], index)
    if "space" in study.user_attrs:
        space = space_from_json(study.user_attrs["space"])
    else:
        study.set_user_attr("space", space_to_json(space))
        study.set_user_attr("num_epochs", num_epochs)
    if ctx["sampler"] == "random":
        plan = sample_random(space, num, [ctx["seed"], index])
    elif ctx["sampler"] == "grid":
        plan = sample_grid(space, num)
    else:
        plan = [{}] * num
    stage = Stage(index, study, space, plan, num_epochs)
    ctx["interrupted"] += studies.recover(study, ctx["owner"])
    _plan(stage)
    return stage


def _plan(stage: Stage) -> int:
    """Enqueues the stage's open slots, one structure after another (so claims come in
    batches of one structure); returns how many."""
    order = sorted(range(len(stage.plan)), key=lambda i: (repr(structure(stage.plan[i])), i))
    return studies.plan_slots(stage.study, stage.plan, order)


def _setup_for(base: settings.Setup, row: Mapping[str, Any], num_epochs: int) -> settings.Setup:
    return dataclasses.replace(
        base,
        num_epochs=int(row.get("num_epochs", num_epochs)),
        hidden=int(row.get("hidden", base.hidden)),
        optimizer=row.get("optimizer", base.optimizer),
    )


def _record(stage: int, t) -> dict[str, Any]:
    """A finished trial as a plain dict (trials.csv row, summary entries)."""
    return {
        "stage": stage,
        "trial": t.number,
        "slot": t.user_attrs["slot"],
        "hparams": dict(t.params),
        "value": t.value,
        "model": t.user_attrs.get("model", ""),
        **t.user_attrs["result"],
    }


def _run_batch(items, stage: int, num_epochs: int, full: int, ctx: dict) -> list[dict]:
    """Trains claimed trials ``items`` ([(trial, slot, row)], one structure) in one program;
    ``full`` is the stage's full batch size."""
    setup = _setup_for(ctx["setup"], items[0][2], num_epochs)
    rows = [
        {**ctx["hparams"], **{k: v for k, v in row.items() if k in settings.HPARAMS}}
        for _, _, row in items
    ]
    seeds = [studies.trial_seed(ctx["seed"], stage, slot) for _, slot, _ in items]
    # Lanes: a power of two, at least a quarter of the stage's batch (few distinct shapes,
    # so few compiles), at most the batch.
    lanes = min(full, max(1 << (len(items) - 1).bit_length(), full // 4))
    t0 = time.perf_counter()
    state, history = sharding.fit_trials(
        seeds, rows, ctx["data"], setup, ctx["mesh"], lanes, order_seed=ctx["seed"]
    )
    share = (time.perf_counter() - t0) / len(items)
    diverged = sharding.diverged(history)
    out = []
    for j, (trial, slot, _) in enumerate(items):
        div_epoch = int(np.argmin(train.finite(history)[j])) + 1 if diverged[j] else None
        result = {
            "status": "diverged" if diverged[j] else "complete",
            "seed": seeds[j],
            "order_seed": ctx["seed"],
            "num_epochs": setup.num_epochs,
            "seconds": share,
            "diverged_epoch": div_epoch,
            "train_accuracy": float(history["train_accuracy"][j, -1]),
            "val_accuracy": float(history["val_accuracy"][j, -1]),
            "val_accuracy_per_epoch": [float(v) for v in history["val_accuracy"][j]],
        }
        out.append(
            {
                "trial": trial,
                "slot": slot,
                "result": result,
                "params": sharding.trial_params(state, j),
            }
        )
    return out


def _proposer(stage: Stage, dists: dict, earlier: list[list[tuple[dict, float, dict]]], ctx: dict):
    """TPE's ``propose`` for ``studies.claim``: the model's params, and which stage's trials
    it modelled (user attr ``model``: ``random`` during a first stage's start-up)."""

    def propose(study, number):
        seed = studies.trial_seed(ctx["seed"], stage.index, number)
        params, source = studies.propose_tpe(study, dists, earlier, seed, ctx["tpe_startup"])
        return params, {"model": "random" if source is None else f"stage {source}"}

    return propose


def _run_stage(stage: Stage, earlier: list[list[tuple[dict, float, dict]]], ctx: dict) -> int:
    """Claims, trains and tells the stage's slots batch by batch; returns how many trials
    this process ran. Each batch is claimed after the one before it is told, so TPE models
    every batch on all trials finished before it. When no slot is left but other processes
    still run some of this stage's, waits for them (the next stage narrows around them)."""
    dists = distributions(stage.space)
    propose = _proposer(stage, dists, earlier, ctx) if ctx["sampler"] == "tpe" else None
    if propose is not None and not earlier and ctx["batch"] >= len(stage.plan):
        logging.warning(
            "stage %d: tpe claims all %d trials as one batch (search.trials_per_batch=%d), so "
            "none is modelled on another; set search.trials_per_batch below %d",
            stage.index,
            len(stage.plan),
            ctx["batch"],
            len(stage.plan),
        )
    full = min(ctx["batch"], len(stage.plan))
    ran, seconds = 0, 0.0
    while True:
        interrupt.check()
        claimed = studies.claim(
            stage.study, ctx["batch"], len(stage.plan), dists, ctx["owner"], propose
        )
        if not claimed:
            if not _wait_for_others(stage, ctx):
                return ran
            continue
        t0 = time.perf_counter()
        groups: dict[tuple, list] = {}
        for trial, slot in claimed:
            groups.setdefault(structure(trial.params), []).append((trial, slot, trial.params))
        done = [
            r
            for items in groups.values()
            for r in _run_batch(items, stage.index, stage.num_epochs, full, ctx)
        ]
        if ctx["callback"] is not None:
            ctx["callback"](stage.index, [{"slot": r["slot"], **r["result"]} for r in done])
        for r in done:
            _tell(stage, r, ctx)
        ran += len(done)
        seconds += time.perf_counter() - t0
        _log_progress(stage, ran * stage.num_epochs, seconds, ctx)


def _tell(stage: Stage, r: dict, ctx: dict) -> None:
    """Stores a trained trial in the study, and keeps the stage's best params in memory."""
    complete = r["result"]["status"] == "complete"
    value = r["result"]["val_accuracy"] if complete else 0.0
    try:
        r["trial"].set_user_attr("result", r["result"])
        stage.study.tell(r["trial"], value)
    except optuna.exceptions.UpdateFinishedTrialError:  # a storage whose claims are not atomic
        logging.warning(
            "stage %d: trial %d (slot %d) was finished by another process; this result is dropped",
            stage.index,
            r["trial"].number,
            r["slot"],
        )
        return
    # Kept in memory for the stage's best, chosen as run_search chooses it (highest value
    # among complete trials, then lowest slot): no retraining needed.
    best = ctx["best_params"].get(stage.index)
    if complete and (best is None or (value, -r["slot"]) > (best[0], -best[1])):
        ctx["best_params"][stage.index] = (value, r["slot"], r["params"])


def _wait_for_others(stage: Stage, ctx: dict) -> bool:
    """Whether to claim again: True when slots of processes that died were planned again,
    or (after a pause) while other live processes run trials of this stage; False when no
    trial of the stage is left anywhere."""
    ctx["interrupted"] += studies.recover(stage.study, ctx["owner"])
    if _plan(stage):
        return True
    others = studies.running_elsewhere(stage.study, ctx["owner"])
    if not others:
        return False
    if others != ctx.get("waiting_for"):
        logging.info(
            "stage %d: waiting for %d trials other processes are running", stage.index, others
        )
        ctx["waiting_for"] = others
    time.sleep(WAIT_SECONDS)
    return True


WAIT_SECONDS = 2.0


def _log_progress(stage: Stage, trial_epochs: int, seconds: float, ctx: dict) -> None:
    """One line after a batch: trials done / planned, this stage's best val accuracy, the
    time elapsed and an ETA: the trial-epochs left in every stage at the rate (seconds per
    trial-epoch) this process measured in this stage."""
    planned, epochs = ctx["planned"], [e for _, e in ctx["stages"]]
    here = len(studies.finished(stage.study))
    left = (planned[stage.index] - here) * stage.num_epochs + sum(
        n * e for n, e in zip(planned[stage.index + 1 :], epochs[stage.index + 1 :])
    )
    logging.info(
        "stage %d/%d: %d/%d trials done (%d/%d of this stage, %d epochs each), best val acc "
        "%.4f, %s elapsed, ETA %s",
        stage.index + 1,
        len(planned),
        ctx["finished_before"] + here,
        sum(planned),
        here,
        planned[stage.index],
        stage.num_epochs,
        stage.study.best_value if here else float("nan"),
        report.duration(time.perf_counter() - ctx["start"]),
        report.duration(max(left, 0) * seconds / trial_epochs),
    )


def run_search(config: Any, workdir: str, callback=None) -> dict[str, Any]:
    """Runs (or resumes) the sweep a config describes and writes its workdir.

    Stage s trains ``stages[s]`` = (trials, epochs) in batches: each batch holds trials of
    one structure and is one ``jax.vmap(train.fit)`` sharded over the local devices. Stage
    s + 1 samples inside ``narrow(space_s, ...)``; with TPE it models the earlier stages'
    trials from its first trial on (``lib.study``). Every trial is stored in the Optuna
    study ``<search.study_name>.stage<s>`` (journal file in the workdir by default), where
    several processes may share the work; a rerun skips finished trials and re-runs those an
    interrupted run left unfinished; a config that would drop or change finished stages is
    refused (``lib.study.check_stages``). ``lib.interrupt.check()`` is called between
    batches: a signal stops the sweep there, with every told trial kept.

    The best trial is the one with the highest validation accuracy (then the lowest slot,
    so the choice does not depend on how many processes shared the sweep) among the
    ``complete`` trials of the last stage that has any; diverged trials never count.
    Without any complete trial, summary.json has ``best: None`` and no best params or test
    accuracy are written. ``border_warnings`` also says when a stage learned nothing (no
    trial clearly above the validation set's majority-class rate).

    Args:
      config: a training config plus a ``search`` block (see configs/digits_sweep.py).
      workdir: where config.json, study.journal, trials.csv, summary.json, search.png,
        best_hparams.json and best_params/ (orbax) go.
      callback: optional ``callback(stage, results)`` called after each batch has trained
        and before it is stored (raising from it interrupts the sweep mid-batch).

    Returns:
      the summary written to summary.json.
    """
    start = time.perf_counter()
    plan = _check_config(config, workdir)  # raises before anything is written
    s = config.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if s.get("storage") or os.path.exists(os.path.join(workdir, "study.journal")):
        studies.check_stages(
            studies.open_storage(s.get("storage"), workdir), s.study_name, plan["stages"], s.sampler
        )
    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), plan["config_dict"])
    storage = studies.open_storage(s.get("storage"), workdir)
    ctx = _context(plan, s, callback, start)
    space, stage_summaries, warnings, records, earlier = plan["space"], [], [], [], []
    best = None
    for index, (num, num_epochs) in enumerate(plan["stages"]):
        interrupt.check()
        stage = _open_stage(storage, index, space, num, num_epochs, ctx)
        dists = distributions(stage.space)
        ctx["planned"][index], ctx["finished_before"] = len(stage.plan), len(records)
        logging.info(
            "stage %d/%d: %d trials of %d epochs (%d already finished)",
            index + 1,
            len(plan["stages"]),
            len(stage.plan),
            num_epochs,
            len(studies.finished(stage.study)),
        )
        t0 = time.perf_counter()
        ctx["ran"] += _run_stage(stage, earlier, ctx)
        ctx["train_seconds"] += time.perf_counter() - t0
        stage_records = [_record(index, t) for t in studies.finished(stage.study)]
        records += stage_records
        earlier.append([(r["hparams"], r["value"], dists) for r in stage_records])
        stage_summary = report.stage_summary(
            index,
            stage.space,
            num_epochs,
            stage_records,
            plan["space"],
            plan["setup"],
            ctx["chance"],
        )
        stage_summaries.append(stage_summary)
        warnings += stage_summary["border_warnings"]
        best = report.best_trial(stage_records) or best
        ok = [r for r in stage_records if r["status"] == "complete"]
        if index + 1 < len(plan["stages"]) and ok:  # with none complete, keep the range
            rows, scores = [r["hparams"] for r in ok], [r["value"] for r in ok]
            space = narrow(stage.space, rows, scores, float(s.top_fraction))
    report.write_trials(os.path.join(workdir, "trials.csv"), records, plan["space"])
    summary = {
        "num_trials": len(records),
        "stages": stage_summaries,
        "border_warnings": warnings,
        "best": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "test_accuracy": None,
        "trials_run": ctx["ran"],
        "interrupted_trials": ctx["interrupted"],
        "trials_per_second": ctx["ran"] / ctx["train_seconds"] if ctx["ran"] else None,
        "sampler": s.sampler,
        "devices": ctx["mesh"].size,
    }
    if best is None:
        logging.error(
            "no trial of any stage completed (all %d diverged): no best trial, no best params "
            "and no test accuracy; narrow the ranges (e.g. lower "
            "--config.search.space.learning_rate.high) and run again with a new --workdir",
            len(records),
        )
    else:
        summary.update(_evaluate_best(workdir, best, plan["dataset"], ctx))
    summary["seconds"] = time.perf_counter() - start
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    plots.search_trials(records, plan["space"], os.path.join(workdir, "search.png"), best)
    return summary


def _context(plan: dict, s: Any, callback, start: float) -> dict[str, Any]:
    """What every stage of this process's sweep shares (data on the devices, counters)."""
    mesh = sharding.trial_mesh()
    y_val = np.asarray(plan["dataset"].y_val)
    return {
        "setup": plan["setup"],
        "hparams": plan["hparams"],
        "seed": int(s.seed),
        "study_name": s.study_name,
        "batch": sharding.padded_size(int(s.trials_per_batch), mesh.size),
        "mesh": mesh,
        "data": sharding.replicate(train.to_device(plan["dataset"]), mesh),
        "sampler": s.sampler,
        "tpe_startup": int(s.get("tpe_startup", 10)),
        "callback": callback,
        "best_params": {},
        "owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        "stages": plan["stages"],
        "planned": [num for num, _ in plan["stages"]],
        "finished_before": 0,
        "chance": (np.bincount(y_val).max() / len(y_val), len(y_val)),
        "start": start,
        "ran": 0,
        "interrupted": 0,
        "train_seconds": 0.0,
    }


def _evaluate_best(workdir: str, best: dict, dataset, ctx: dict) -> dict[str, Any]:
    """The best trial's test accuracy, with best_params/ and best_hparams.json written; the
    summary's entries for it."""
    best_params, best_setup = _best_params(workdir, best, ctx)
    test_acc = float(train.accuracy(best_params, dataset.x_test, dataset.y_test, best_setup))
    report.write_best(workdir, best, test_acc)
    logging.info(
        "best (stage %d, trial %d): val acc %.4f  test acc %.4f  %s",
        best["stage"],
        best["trial"],
        best["val_accuracy"],
        test_acc,
        best["hparams"],
    )
    keys = ("hparams", "val_accuracy", "train_accuracy", "stage", "trial", "seed", "num_epochs")
    return {
        "best": {k: best[k] for k in keys},
        "train_accuracy": best["train_accuracy"],
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": test_acc,
    }


def _best_params(workdir: str, best: dict, ctx: dict):
    """The best trial's params: from best_params/ if saved, from this run's memory, or
    retrained (a finished trial is deterministic in its seed and hparams)."""
    path, info = os.path.join(workdir, "best_params"), os.path.join(workdir, "best_hparams.json")
    setup = _setup_for(ctx["setup"], best["hparams"], best["num_epochs"])
    ident = {"stage": best["stage"], "trial": best["trial"]}
    if (
        os.path.exists(info)
        and metrics.read_json(info).get("trial") == ident
        and checkpoints.steps(path)
    ):
        like = jax.eval_shape(lambda: train.init_params(jax.random.key(0), setup))
        return checkpoints.restore(path, 0, like=like), setup
    kept = ctx["best_params"].get(best["stage"])
    if kept is not None and kept[1] == best["slot"]:
        params = kept[2]
    else:
        row = {
            **ctx["hparams"],
            **{k: v for k, v in best["hparams"].items() if k in settings.HPARAMS},
        }
        state, _ = sharding.fit_trials(
            [best["seed"]], [row], ctx["data"], setup, ctx["mesh"], order_seed=best["order_seed"]
        )
        params = sharding.trial_params(state, 0)
    tmp = f"{path}.tmp-{ctx['owner'].replace(':', '-')}"  # its own: workers share workdirs
    checkpoints.save(tmp, 0, params)
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)
    except OSError:  # another process of the sweep put the same params there first
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(info)  # rewritten by _write_best once the new params are in place
    return params, setup
