"""From a training config to a tuned, ensembled model in one job: ``run_tune(config, workdir)``.

The notes' workflow (search coarse to fine, take the best, ensemble) as one resumable sweep
whose last stages train the final models:

1. ``lib.search`` runs the search stages, with a default space and stages derived from the
   data and the run wherever the config's ``search`` block is silent (``lib.autospace``; a
   default range grows past a border its best trials touch, a configured one stays as
   given). The last search stage trains its trials for the config's own epochs.
2. A last stage trains ``ensemble.size - 1`` replicas of that stage's best trial: its
   hyperparameters, new seeds. Both stages draw each trial's own minibatch order (so the
   members err apart), and every complete trial's weights, curves and weight average are
   written to ``members/`` before the study counts it finished (``keep_members``): nothing
   is trained twice, and a rerun after ``kill -9`` goes on from the last told batch.
3. The best model is the best of the best trial and its replicas (``best_params/``,
   ``best_hparams.json`` with the flags that retrain it); the ensemble is all of them, read
   back from ``members/`` and evaluated as ``lib.ensemble`` evaluates any members.

Writes the sweep's files (config.json, study.journal, trials.csv, search.png,
best_hparams.json, best_params/), ``members/``, curves.png and the weight figure of the best
model, ensemble.png, summary.json and report.md (``lib.tune_report``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from lib import (
    autospace,
    distributed,
    ensemble,
    members,
    metrics,
    model,
    plots,
    search,
    settings,
    sharding,
    sweep_stage,
    train,
    tune_report,
)

MEMBERS = "members"  # the last stage's trained params and curves, one .npz per slot


def run_tune(config: Any, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) the whole job a training config (plus optional ``search`` and
    ``ensemble`` blocks) describes, and writes ``workdir``.

    Returns:
      the summary written to summary.json: the sweep's entries (``stages``, ``num_trials``,
      ``border_warnings``, ...), ``best`` (hparams and the best model's
      ``train/val/test_accuracy``), ``ensemble`` (``members``, ``val_accuracy``,
      ``test_accuracy``, ``gain_over_best``, ...), ``config_epochs``, ``preprocess``,
      ``space_notes`` and ``wall_seconds``. ({} on the other processes of a multi-process
      run, which write nothing.)
    """
    start = time.perf_counter()
    size, how = int(config.ensemble.size), config.ensemble.get("combine", "proba")
    if size < 1:
        raise ValueError(f"ensemble.size={size} must be >= 1; set --config.ensemble.size=8")
    if how not in ensemble.COMBINES:
        raise ValueError(f"unknown ensemble.combine {how!r}; valid: {', '.join(ensemble.COMBINES)}")
    notes: dict[str, str] = {}
    sweep = search.read_sweep(config, defaults(size, notes))
    summary, records = search.run_sweep(
        sweep, workdir, keep=lambda stage, done: keep_members(workdir, stage, sweep, done)
    )
    if not distributed.is_main():
        return {}
    top = top_members(records, sweep, size)
    if not top:
        raise FloatingPointError(
            "no trial of the last search stage completed (all diverged): no ensemble; lower "
            "the learning-rate range (--config.search.space.learning_rate.high) and use a new "
            "--workdir"
        )
    groups = member_groups(workdir, top, sweep)
    result = ensemble.evaluate(groups, sweep.dataset, how)
    plots.ensemble_members(result, os.path.join(workdir, "ensemble.png"))
    summary["best"] = {
        **(summary.get("best") or {}),
        **_best_model(workdir, summary, sweep),
    }
    summary = _summary(summary, result, top, sweep, config, notes, start)
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    tune_report.write(workdir, summary)
    _log_result(summary)
    return summary


def defaults(size: int, notes: dict[str, str] | None = None) -> search.Defaults:
    """What a tune derives where its config is silent (``_plan``), for an ensemble of
    ``size``: the best trial and ``size - 1`` replicas of it (new seeds); ``notes``
    receives how each range was derived."""
    notes = {} if notes is None else notes
    plan = functools.partial(_plan, size=size, notes=notes)
    return search.Defaults(plan=plan, replicas=size - 1)


def _plan(configured, stages, dataset, setup, hparams, *, size: int, notes: dict):
    """``search.Defaults.plan``: the space (defaults under the configured entries) and the
    stages (``autospace.default_stages`` unless configured)."""
    space, extendable, how = autospace.resolve(configured, setup, hparams, dataset)
    notes.update(how)
    if stages is None:
        stages = autospace.default_stages(setup.num_epochs)
    return space, stages, extendable


def member_path(workdir: str, stage: int, slot: int) -> str:
    return os.path.join(workdir, MEMBERS, f"stage{stage}-slot{slot:04d}.npz")


def keep_members(workdir: str, stage: int, sweep: search.Sweep, done: Sequence[dict]) -> None:
    """Writes each complete trial of the stages members come from (the last search stage,
    whose best trial is one, and its replicas) to ``members/``, its params, per-epoch curves
    and running average of the weights, atomically (a rename), before the study is told."""
    if stage < sweep.own_order_from:
        return
    os.makedirs(os.path.join(workdir, MEMBERS), exist_ok=True)
    for r in done:
        if r["result"]["status"] != "complete":
            continue
        arrays = {f"params/{k}": np.asarray(v) for k, v in r["params"].items()}
        arrays.update({f"history/{k}": np.asarray(v) for k, v in r["history"].items()})
        arrays.update({f"ema/{k}": np.asarray(v) for k, v in (r.get("ema") or {}).items()})
        path = member_path(workdir, stage, r["slot"])
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def read_member(workdir: str, stage: int, slot: int) -> dict[str, dict] | None:
    """A kept member's ``params``, ``history`` (per-epoch metrics) and ``ema`` (the running
    average of its weights; {} without one), or None when its file is missing or
    unreadable."""
    try:
        with np.load(member_path(workdir, stage, slot), allow_pickle=False) as f:
            items = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        if not isinstance(e, FileNotFoundError):
            logging.warning("members/: stage %d slot %d unreadable (%s); retrained", stage, slot, e)
        return None
    return {
        part: {k.split("/", 1)[1]: v for k, v in items.items() if k.startswith(f"{part}/")}
        for part in ("params", "history", "ema")
    }


def top_members(records: Sequence[dict], sweep: search.Sweep, size: int) -> list[dict]:
    """The members: the best complete trial of the last search stage and its replicas'
    complete trials (with ``sweep.replicas``), else the ``size`` best complete trials of the
    last stage; best validation accuracy first (ties: the earlier stage, the lower slot)."""
    first = sweep.own_order_from
    ok = [r for r in records if r["stage"] >= first and r["status"] == "complete"]
    rank = lambda r: (-r["value"], r["stage"], r["slot"])
    if sweep.replicas:
        searched = sorted((r for r in ok if r["stage"] == first), key=rank)[:1]
        ok = searched + [r for r in ok if r["stage"] > first] if searched else []
    return sorted(ok, key=rank)[:size]


def member_groups(workdir: str, top: Sequence[dict], sweep: search.Sweep) -> list[members.Group]:
    """The members as groups of one structure each, their final weights read from
    ``members/`` (not their running average: measured on CIFAR-10, averaged weights err
    more alike, and their ensemble gained less). A member whose file is missing (a worker
    with another workdir trained it) is retrained from its seed, hparams and order: the
    same weights."""
    by_setup: dict[settings.Setup, list[tuple[dict, dict]]] = {}
    for r in top:
        setup = sweep_stage.setup_for(sweep.setup, r["hparams"], r["num_epochs"])
        kept = read_member(workdir, r["stage"], r["slot"]) or _retrain(r, setup, sweep)
        by_setup.setdefault(setup, []).append((r, kept["params"]))
    return [
        members.Group(
            setup,
            jax.tree.map(lambda *p: np.stack(p), *[p for _, p in items]),
            tuple(member_name(r) for r, _ in items),
        )
        for setup, items in by_setup.items()
    ]


def member_name(r: dict) -> str:
    return f"trial {r['trial']} (stage {r['stage']})"


def _retrain(r: dict, setup: settings.Setup, sweep: search.Sweep) -> dict:
    logging.info("members/: %s not kept here; retraining it", member_name(r))
    mesh = sharding.trial_mesh(jax.local_devices())  # process 0 alone: its own devices
    state, _ = sharding.fit_trials(
        [r["seed"]],
        [sweep_stage.trial_hparams(sweep.hparams, r["hparams"])],
        train.to_device(sweep.dataset, mesh),
        setup,
        mesh,
        order_seed=r["order_seed"],
    )
    ema = jax.tree.map(lambda a: np.asarray(a[0]), state.ema) if setup.ema else {}
    return {"params": sharding.trial_params(state, 0), "ema": ema}


def _best_model(workdir: str, summary: dict, sweep: search.Sweep) -> dict:
    """curves.png and the weight figure of the best model when it is kept; the val and test
    accuracy of its weights' running average when it has one (the summary's ``ema``)."""
    best = summary.get("best")
    kept = best and read_member(workdir, best["stage"], best["slot"])
    if not kept:
        return {}
    params, history = kept["params"], kept["history"]
    epochs = len(history["val_accuracy"])
    rows = [{"epoch": e + 1, **{k: float(v[e]) for k, v in history.items()}} for e in range(epochs)]
    plots.training_curves(rows, os.path.join(workdir, "curves.png"))
    setup = sweep_stage.setup_for(sweep.setup, best["hparams"], best["num_epochs"])
    train.weight_figure(params, setup, sweep.dataset, workdir)
    if not kept["ema"]:
        return {}
    ds = sweep.dataset
    return {
        "ema": {
            f"{split}_accuracy": float(
                model.accuracy(
                    kept["ema"], getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}"), setup
                )
            )
            for split in ("val", "test")
        }
    }


def _summary(summary, result, top, sweep, config, notes, start) -> dict[str, Any]:
    """The sweep's summary with the job's entries."""
    ens = {
        **result,  # lib.ensemble.evaluate's members, ensemble, best and mean member, gains
        "val_accuracy": result["ensemble"]["val_accuracy"],
        "test_accuracy": result["ensemble"]["test_accuracy"],
        "members_from": _members_from(top, sweep),
        "origin": [
            {
                "name": member_name(r),
                "stage": r["stage"],
                "trial": r["trial"],
                "slot": r["slot"],
                "num_epochs": r["num_epochs"],
                "model": sweep.setup.model,
                "hparams": r["hparams"],
            }
            for r in top
        ],
    }
    best = summary.get("best") or {}
    return {
        **summary,
        "best": {
            **best,
            "train_accuracy": summary.get("train_accuracy"),
            "val_accuracy": summary.get("val_accuracy"),
            "test_accuracy": summary.get("test_accuracy"),
        },
        "ensemble": ens,
        "config_epochs": sum(st["config_epochs"] for st in summary["stages"]),
        "preprocess": settings.preprocess_choice(
            sweep.dataset, config.dataset.get("preprocess", "center")
        ),
        "dataset": sweep.dataset.describe(),
        "model": sweep.setup.model,
        "optimizer": sweep.setup.optimizer,
        "loss": sweep.setup.loss,
        "space_notes": notes,
        "wall_seconds": time.perf_counter() - start,
    }


def _members_from(top: Sequence[dict], sweep: search.Sweep) -> str:
    searched = [r for r in top if r["stage"] == sweep.own_order_from]
    if sweep.replicas and searched:
        return (
            f"{member_name(searched[0])}, the last search stage's best, and "
            f"{len(top) - 1} replicas of it (its hyperparameters, new seeds and minibatch orders)"
        )
    return f"the last stage's {len(top)} best trials"


def _log_result(summary: dict) -> None:
    e, b = summary["ensemble"], summary["best"]
    logging.info(
        "best model: val %.4f  test %.4f; ensemble of %d: val %.4f  test %.4f (%+.4f over the "
        "best member); %d configuration-epochs, %.1fs in all",
        b["val_accuracy"],
        b["test_accuracy"],
        e["size"],
        e["val_accuracy"],
        e["test_accuracy"],
        e["gain_over_best"]["test_accuracy"],
        summary["config_epochs"],
        summary["wall_seconds"],
    )
