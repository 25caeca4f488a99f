"""Hyperparameter search: runs a study over a search space (``lib.space``), resumably.

``run_search(config, workdir)`` drives a sweep: each batch of trials of one shape is one
vmapped, sharded ``train.fit`` (``lib.sharding``). Each trial has its own seed (its
initialisation and dropout) but every trial of a study draws its minibatches in the same
order, from ``search.seed``: trials differ only in what the search varies (common random
numbers), and each minibatch is gathered once for the whole batch, whose products become one
wide matrix product. The trials live in an Optuna study in the workdir (``lib.study``:
storage, resume checks, recovery, sharing one study between processes), so rerunning the
same command resumes it. Stage s + 1 samples inside the range the best complete trials of
stage s narrowed (coarse to fine). A stage is asked, trained and told batch by batch
(``search.trials_per_batch``), so TPE models each batch on those told before it. The best
trial is the best complete one of the last stage that has any. Outputs: trials.csv,
summary.json, search.png, best_hparams.json and the best trial's params (orbax).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import shutil
import socket
import time
import uuid
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np
import optuna
from optuna.trial import TrialState

from lib import checkpoints, metrics, plots, settings, sharding, study as studies, train
from lib.space import (
    Space,
    border_warnings,
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
# trials.csv: these columns, with one column per searched hyperparameter between them.
TRIAL_COLUMNS_BEFORE_SPACE = (
    "stage",
    "trial",
    "slot",
    "status",
    "seed",
    "order_seed",
    "num_epochs",
)
TRIAL_COLUMNS_AFTER_SPACE = (
    "train_accuracy",
    "val_accuracy",
    "seconds",
    "diverged_epoch",
    "val_accuracy_per_epoch",
)
TRIAL_COLUMNS = TRIAL_COLUMNS_BEFORE_SPACE + TRIAL_COLUMNS_AFTER_SPACE
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


def _trial_seed(seed: int, stage: int, slot: int) -> int:
    return int(np.random.SeedSequence([seed, stage, slot]).generate_state(1)[0] >> 1)


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
        **t.user_attrs["result"],
    }


def _run_batch(items, stage: int, num_epochs: int, full: int, ctx: dict) -> list[dict]:
    """Trains asked trials ``items`` ([(trial, slot, row)], one structure) in one program;
    ``full`` is the stage's full batch size."""
    setup = _setup_for(ctx["setup"], items[0][2], num_epochs)
    rows = [
        {**ctx["hparams"], **{k: v for k, v in row.items() if k in settings.HPARAMS}}
        for _, _, row in items
    ]
    seeds = [_trial_seed(ctx["seed"], stage, slot) for _, slot, _ in items]
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
        div_epoch = (
            int(np.argmin(np.isfinite(history["train_loss"][j]))) + 1 if diverged[j] else None
        )
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


def _batches(plan, pending: list[int], size: int) -> list[list[int]]:
    """Pending slots in batches of at most ``size``; with a plan, one structure per batch."""
    if plan is None:
        return [pending[i : i + size] for i in range(0, len(pending), size)]
    pending = sorted(pending, key=lambda i: repr(structure(plan[i])))
    groups = [list(g) for _, g in itertools.groupby(pending, lambda i: structure(plan[i]))]
    return [g[i : i + size] for g in groups for i in range(0, len(g), size)]


def _run_stage(study, stage: int, space: Space, num: int, num_epochs: int, ctx: dict) -> int:
    """Runs the stage's untaken slots batch by batch; returns how many trials ran.

    Each batch is asked, trained and told before the next is asked, so TPE models every
    batch after its first ``search.tpe_startup`` trials on the ones told before it. The taken
    slots (RUNNING or COMPLETE, possibly by another process) are re-read before each batch.
    """
    dists = distributions(space)
    plan = None
    if ctx["sampler"] == "random":
        plan = sample_random(space, num, [ctx["seed"], stage])
    elif ctx["sampler"] == "grid":
        plan = sample_grid(space, num)
        num = len(plan)
    elif ctx["batch"] >= num:
        logging.warning(
            "stage %d: tpe asks all %d trials as one batch (search.trials_per_batch=%d), so "
            "none is modelled on another; set search.trials_per_batch below %d",
            stage,
            num,
            ctx["batch"],
            num,
        )
    full = min(ctx["batch"], num)
    ran = 0
    while True:
        taken = studies.taken_slots(study)
        batches = _batches(plan, [i for i in range(num) if i not in taken], ctx["batch"])
        if not batches:
            return ran
        asked = []
        for slot in batches[0]:
            if plan is not None:
                study.enqueue_trial(plan[slot])
            trial = study.ask(dists)
            trial.set_user_attr("owner", ctx["owner"])  # before the slot: see lib.study
            trial.set_user_attr("slot", slot)
            asked.append((trial, slot, trial.params))
        groups: dict[tuple, list] = {}
        for item in asked:
            groups.setdefault(structure(item[2]), []).append(item)
        done = [
            r for items in groups.values() for r in _run_batch(items, stage, num_epochs, full, ctx)
        ]
        if ctx["callback"] is not None:
            ctx["callback"](stage, [{"slot": r["slot"], **r["result"]} for r in done])
        for r in done:
            complete = r["result"]["status"] == "complete"
            value = r["result"]["val_accuracy"] if complete else 0.0
            r["trial"].set_user_attr("result", r["result"])
            study.tell(r["trial"], value)
            # Kept in memory for the stage's best, chosen as run_search chooses it (highest
            # value among complete trials, then lowest trial number): no retraining needed.
            best = ctx["best_params"].get(stage)
            if complete and (best is None or (value, -r["trial"].number) > (best[0], -best[1])):
                ctx["best_params"][stage] = (value, r["trial"].number, r["params"])
        ran += len(done)
        logging.info(
            "stage %d: %d trials of %d epochs done, best val acc %.4f",
            stage,
            len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
            num_epochs,
            study.best_value,
        )


def run_search(config: Any, workdir: str, callback=None) -> dict[str, Any]:
    """Runs (or resumes) the sweep a config describes and writes its workdir.

    Stage s trains ``stages[s]`` = (trials, epochs) in batches: each batch holds trials of
    one structure and is one ``jax.vmap(train.fit)`` sharded over the local devices. Stage
    s + 1 samples inside ``narrow(space_s, ...)``. Every trial is stored in the Optuna study
    ``<search.study_name>.stage<s>`` (journal file in the workdir by default); a rerun skips
    finished trials and re-runs those an interrupted run left RUNNING; a config that would
    drop or change finished stages is refused (``lib.study.check_stages``).

    The best trial is the one with the highest validation accuracy (then the lowest trial
    number) among the ``complete`` trials of the last stage that has any; diverged trials
    never count. Without any complete trial, summary.json has ``best: None`` and no best
    params or test accuracy are written.

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
    mesh = sharding.trial_mesh()
    ctx = {
        "setup": plan["setup"],
        "hparams": plan["hparams"],
        "seed": int(s.seed),
        "batch": sharding.padded_size(int(s.trials_per_batch), mesh.size),
        "mesh": mesh,
        "data": sharding.replicate(train.to_device(plan["dataset"]), mesh),
        "sampler": s.sampler,
        "callback": callback,
        "best_params": {},
        "owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
    }
    space, stage_summaries, warnings, records = plan["space"], [], [], []
    best = None
    ran = interrupted = 0
    train_seconds = 0.0
    for stage, (num, num_epochs) in enumerate(plan["stages"]):
        study = optuna.create_study(
            storage=storage,
            study_name=studies.stage_name(s.study_name, stage),
            sampler=studies.make_sampler(
                s.sampler, int(s.seed) + stage, int(s.get("tpe_startup", 10))
            ),
            direction="maximize",
            load_if_exists=True,
        )
        if "space" in study.user_attrs:  # the stage's space as first created is authoritative
            space = space_from_json(study.user_attrs["space"])
        else:
            study.set_user_attr("space", space_to_json(space))
            study.set_user_attr("num_epochs", num_epochs)
        interrupted += studies.recover(study, ctx["owner"])
        t0 = time.perf_counter()
        ran += _run_stage(study, stage, space, num, num_epochs, ctx)
        train_seconds += time.perf_counter() - t0
        stage_records = [_record(stage, t) for t in studies.finished(study)]
        records += stage_records
        ok = [r for r in stage_records if r["status"] == "complete"]
        rows, scores = [r["hparams"] for r in ok], [r["value"] for r in ok]
        stage_warnings = [
            f"stage {stage}: {w}"
            for w in border_warnings(space, rows, scores, plan["setup"], configured=plan["space"])
        ]
        if not ok:
            stage_warnings.append(
                f"stage {stage}: all {len(stage_records)} trials diverged (NaN/inf loss); "
                "lower the learning-rate range, e.g. --config.search.space.learning_rate.high"
            )
        for w in stage_warnings:
            logging.warning("%s", w)
        warnings += stage_warnings
        stage_best = max(ok, key=lambda r: (r["value"], -r["trial"])) if ok else None
        best = stage_best or best
        stage_summaries.append(
            {
                "num_trials": len(stage_records),
                "num_epochs": num_epochs,
                "space": space_to_json(space),
                "border_warnings": stage_warnings,
                "diverged": len(stage_records) - len(ok),
                "best": stage_best
                and {
                    k: stage_best[k] for k in ("trial", "hparams", "val_accuracy", "train_accuracy")
                },
            }
        )
        if stage + 1 < len(plan["stages"]) and ok:  # with none complete, keep the range
            space = narrow(space, rows, scores, float(s.top_fraction))
    _write_csv(os.path.join(workdir, "trials.csv"), records, plan["space"])
    summary = {
        "num_trials": len(records),
        "stages": stage_summaries,
        "border_warnings": warnings,
        "best": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "test_accuracy": None,
        "trials_run": ran,
        "interrupted_trials": interrupted,
        "trials_per_second": ran / train_seconds if ran else None,
        "sampler": s.sampler,
        "devices": mesh.size,
    }
    if best is None:
        logging.error(
            "no trial of any stage completed (all %d diverged): no best trial, no best params "
            "and no test accuracy; narrow the ranges (e.g. lower "
            "--config.search.space.learning_rate.high) and run again with a new --workdir",
            len(records),
        )
    else:
        # The best trial: highest val accuracy (then lowest trial number) among the complete
        # trials of the last stage that has any (later stages train longer).
        best_params, best_setup = _best_params(workdir, best, ctx)
        dataset = plan["dataset"]
        test_acc = float(train.accuracy(best_params, dataset.x_test, dataset.y_test, best_setup))
        _write_best(workdir, best, test_acc)
        summary.update(
            best={
                k: best[k]
                for k in (
                    "hparams",
                    "val_accuracy",
                    "train_accuracy",
                    "stage",
                    "trial",
                    "seed",
                    "num_epochs",
                )
            },
            train_accuracy=best["train_accuracy"],
            val_accuracy=best["val_accuracy"],
            test_accuracy=test_acc,
        )
        logging.info(
            "best (stage %d, trial %d): val acc %.4f  test acc %.4f  %s",
            best["stage"],
            best["trial"],
            best["val_accuracy"],
            test_acc,
            best["hparams"],
        )
    summary["seconds"] = time.perf_counter() - start
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    plots.search_trials(records, plan["space"], os.path.join(workdir, "search.png"))
    return summary


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
    if kept is not None and kept[1] == best["trial"]:
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
    overrides = {settings.CONFIG_PATHS[k]: v for k, v in values.items()}
    metrics.write_json(
        os.path.join(workdir, "best_hparams.json"),
        {
            "trial": {"stage": best["stage"], "trial": best["trial"]},
            "hparams": best["hparams"],
            "seed": best["seed"],
            "order_seed": best["order_seed"],
            "val_accuracy": best["val_accuracy"],
            "train_accuracy": best["train_accuracy"],
            "test_accuracy": test_accuracy,
            "overrides": overrides,
            "flags": " ".join(f"--config.{k}={v}" for k, v in sorted(overrides.items())),
        },
    )


def _write_csv(path: str, records: list[dict], space: Space) -> None:
    names = sorted(n for n in space if n != "num_epochs")  # num_epochs has its own column
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*TRIAL_COLUMNS_BEFORE_SPACE, *names, *TRIAL_COLUMNS_AFTER_SPACE])
        for r in records:
            writer.writerow(
                [
                    *(r[c] for c in TRIAL_COLUMNS_BEFORE_SPACE),
                    *(r["hparams"][n] for n in names),
                    r["train_accuracy"],
                    r["val_accuracy"],
                    r["seconds"],
                    "" if r["diverged_epoch"] is None else r["diverged_epoch"],
                    " ".join(f"{v:.4f}" for v in r["val_accuracy_per_epoch"]),
                ]
            )
    os.replace(path + ".tmp", path)
