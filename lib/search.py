"""Hyperparameter search: runs a study over a search space (``lib.space``), resumably.

``run_search(config, workdir)`` reads the config (``read_sweep``, the only reader), opens the
workdir's Optuna study (``lib.study``), runs each stage in turn (``lib.sweep_stage``: each
batch of one shape is one vmapped, sharded ``train.fit``) inside the range the stage before
narrowed (``lib.narrowing``), and writes the outputs (``_write_outputs``). Trials share one
minibatch order (common random numbers: each minibatch is gathered once for the batch),
unless a stage draws its own (``Sweep.own_order_from``). A rerun resumes the study. The best
trial is the best complete one of the last stage that has any. Several processes of one
multi-process JAX run (``lib.distributed``) share each batch's devices: process 0 opens the
study, decides every batch and writes (``sharding.leading``), the others follow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from typing import Any, NamedTuple

import jax
import numpy as np
import optuna
from absl import logging

from lib import (
    checkpoints,
    data,
    distributed,
    interrupt,
    metrics,
    plots,
    samplers,
    settings,
    sharding,
    sweep_stage,
    train,
)
from lib import study as studies
from lib import sweep_report as report
from lib.narrowing import next_space
from lib.space import Space, check_space, space_from_config, stages_from_config

SAMPLERS = tuple(samplers.SAMPLERS)  # the names search.sampler takes
_RESUMABLE_CHANGES = (
    "search.stages",
    "search.num_trials",
    "search.trials_per_batch",
    "search.tpe_startup",
    "search.heartbeat_interval",  # how a dead worker is noticed, not what a trial computes
    "search.grace_period",
    *settings.DEVICE_SPLITS,  # (False, or absent from a sweep written before they existed)
)


def run_search(config: Any, workdir: str, callback=None) -> dict[str, Any]:
    """Runs (or resumes) the sweep a config describes and writes its workdir.

    Stage s trains ``stages[s]`` = (trials, epochs) in batches: each batch holds trials of
    one structure and is one ``jax.vmap(train.fit)`` sharded over the local devices. Stage
    s + 1 samples inside ``narrow(space_s, ...)``; with TPE it models the earlier stages'
    trials from its first trial on (``lib.samplers``). Every trial is stored in the Optuna
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
      the summary written to summary.json (on the other processes of a multi-process run,
      which write nothing: {}).
    """
    return run_sweep(read_sweep(config), workdir, callback)[0]


def run_sweep(sweep: Sweep, workdir: str, callback=None, keep=None) -> tuple[dict, list[dict]]:
    """Runs (or resumes) ``sweep`` (``read_sweep``'s value) in ``workdir``, as
    ``run_search`` describes; returns (the summary, every finished trial's record).

    ``keep``: optional ``keep(stage, done)`` called with each trained batch (dicts with
    ``slot``, ``result`` and ``params``) before the study is told of it, so what it keeps
    (an ensemble's members) is on disk before the trial counts as finished.
    """
    start = time.perf_counter()
    distributed.check_same_on_all(
        "the config and the data set", sweep.config_dict, *sweep.dataset.arrays()
    )
    trainer = _trainer(sweep, callback, keep)
    if not distributed.is_main():  # a follower of a multi-process sweep: it only trains
        sharding.follow(trainer.data, trainer.mesh)
        return {}, []
    with sharding.leading():
        metrics.check_config(workdir, sweep.config_dict, "sweep", resumable=_RESUMABLE_CHANGES)
        storage = _open_study(sweep, workdir)
        progress = sweep_stage.Progress(
            start, planned=[num for num, _ in sweep.stages], epochs=[e for _, e in sweep.stages]
        )
        records, stage_summaries, best = _run_stages(sweep, storage, trainer, progress)
        summary = _write_outputs(workdir, sweep, records, stage_summaries, best, trainer, progress)
        return summary, records


class Sweep(NamedTuple):
    """Everything a sweep takes from its config, parsed and checked."""

    space: Space  # the configured range; stage 0 samples it
    stages: list[tuple[int, int]]  # (trials, epochs) per stage
    sampler: samplers.Sampler
    seed: int
    top_fraction: float
    trials_per_batch: int
    tpe_startup: int
    study_name: str
    storage: str | None  # an RDB URL; None: <workdir>/study.journal
    heartbeat: tuple[int, int]  # search.heartbeat_interval, search.grace_period (RDB storage)
    dataset: data.Dataset
    setup: settings.Setup
    hparams: dict[str, float]
    config_dict: dict
    extendable: tuple[str, ...] = ()  # default ranges, grown past a border the best touch
    own_order_from: int | None = None  # trials of this stage on draw their own minibatch orders
    replicas: bool = False  # the last stage: new seeds of the stage before it's best trial


class Defaults(NamedTuple):
    """What a search derives where its config is silent (``experiments.tune``):
    ``plan(configured space, stages, dataset, setup, hparams)`` -> (space, stages, the
    names whose range is a default). ``replicas`` > 0 appends a stage of that many trials
    of the last stage's best hyperparameters, each with a new seed (the notes' ensemble of
    one model from several initialisations); the last search stage and it draw their own
    minibatch orders."""

    plan: Any
    replicas: int = 0


def read_sweep(config: Any, defaults: Defaults | None = None) -> Sweep:
    """Parses and validates everything before the workdir is touched (except what the
    workdir holds: ``run_sweep`` compares its config.json on process 0). With ``defaults``
    an empty ``search.space`` or ``search.stages`` is derived by ``defaults.plan``."""
    s = config.search
    if s.sampler not in samplers.SAMPLERS:
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
    settings.check_no_data_parallel(config, "its trials")
    configured = space_from_config(s.space) if s.space or defaults is None else {}
    stages = s.get("stages") or None
    if stages is not None or defaults is None:
        stages = stages_from_config(stages, int(s.num_trials), int(config.train.num_epochs))
    dataset = settings.load_data(config)
    setup = settings.setup_from_config(config, dataset.num_features, dataset.num_classes)
    hparams = settings.hparams_from_config(config)
    settings.validate(setup, hparams, num_train=dataset.x_train.shape[0])
    space, extendable = configured, ()
    own_order_from = None
    if defaults is not None:
        space, stages, extendable = defaults.plan(configured, stages, dataset, setup, hparams)
        own_order_from = len(stages) - 1
        if defaults.replicas:
            stages = [*stages, (int(defaults.replicas), stages[-1][1])]
    check_space(space, setup, stages)
    config_dict = config.to_dict()
    return Sweep(
        space=space,
        stages=stages,
        sampler=samplers.SAMPLERS[s.sampler],
        seed=int(s.seed),
        top_fraction=float(s.top_fraction),
        trials_per_batch=int(s.trials_per_batch),
        tpe_startup=int(s.get("tpe_startup", 10)),
        study_name=s.study_name,
        storage=s.get("storage"),
        heartbeat=studies.heartbeat_from_config(s),
        dataset=dataset,
        setup=setup,
        hparams=hparams,
        config_dict=config_dict,
        extendable=tuple(extendable),
        own_order_from=own_order_from,
        replicas=defaults is not None and defaults.replicas > 0,
    )


def _open_study(sweep: Sweep, workdir: str):
    """Refuses a config that would change the stored study's finished stages, then writes
    config.json; returns the study's storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sweep.storage or os.path.exists(os.path.join(workdir, "study.journal")):
        studies.check_stages(
            studies.open_storage(sweep.storage, workdir, sweep.heartbeat),
            sweep.study_name,
            sweep.stages,
            sweep.sampler,
        )
    os.makedirs(workdir, exist_ok=True)
    metrics.write_json(os.path.join(workdir, "config.json"), sweep.config_dict)
    return studies.open_storage(sweep.storage, workdir, sweep.heartbeat)


def _trainer(sweep: Sweep, callback, keep=None) -> sweep_stage.Trainer:
    """What every batch of the sweep shares (the data put on every process's devices)."""
    mesh = sharding.trial_mesh()
    return sweep_stage.Trainer(
        setup=sweep.setup,
        hparams=sweep.hparams,
        seed=sweep.seed,
        mesh=mesh,
        data=train.to_device(sweep.dataset, mesh),
        batch=sharding.padded_size(sweep.trials_per_batch, mesh.size),
        owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        tpe_startup=sweep.tpe_startup,
        callback=callback,
        keep=keep,
        own_order_from=sweep.own_order_from,
    )


def _run_stages(
    sweep: Sweep, storage, trainer: sweep_stage.Trainer, progress: sweep_stage.Progress
) -> tuple[list[dict], list[dict], dict | None]:
    """Builds and runs each stage in turn, each inside the range the one before it narrowed;
    returns every finished trial's record, each stage's summary and the best trial (None
    when no trial completed)."""
    y_val = np.asarray(sweep.dataset.y_val)
    chance = (np.bincount(y_val).max() / len(y_val), len(y_val))
    space, records, stage_summaries, earlier, best = sweep.space, [], [], [], None
    searched_space = space
    searched = len(sweep.stages) - int(bool(sweep.replicas))  # stages that search
    for index, (num, num_epochs) in enumerate(sweep.stages):
        interrupt.check()
        replicate = sweep.replicas and index == len(sweep.stages) - 1
        if replicate and best is None:
            break  # nothing to replicate: every trial diverged (the summary says so)
        sampler = samplers.replicas(best["hparams"]) if replicate else sweep.sampler
        space = searched_space if replicate else space  # the best trial's own range
        stage = sweep_stage.open_stage(
            storage, sweep.study_name, index, space, num, num_epochs, sampler, sweep.seed
        )
        t0 = time.perf_counter()
        stage_records = sweep_stage.run_stage(stage, earlier, trainer, progress)
        seconds = time.perf_counter() - t0
        records += stage_records
        earlier.append([(r["hparams"], r["value"], stage.dists) for r in stage_records])
        # Replicas' spread is the seeds', not the space's; a default range that a later
        # stage extends is no border to warn of.
        skip = stage.space if replicate else sweep.extendable if index + 1 < searched else ()
        summary = report.stage_summary(
            index, stage.space, num_epochs, stage_records, sweep.space, sweep.setup, chance, skip
        )
        summary |= {"config_epochs": len(stage_records) * num_epochs, "seconds": seconds}
        stage_summaries.append(summary)
        best = report.best_trial([*stage_records, *([best] if replicate else [])]) or best
        if index + 1 < searched:
            ok = [r for r in stage_records if r["status"] == "complete"]
            space, summary["extended"] = next_space(
                stage.index, stage.space, ok, sweep.top_fraction, sweep.extendable, sweep.setup
            )
        searched_space = stage.space
    return records, stage_summaries, best


def _write_outputs(
    workdir: str,
    sweep: Sweep,
    records: list[dict],
    stage_summaries: list[dict],
    best: dict | None,
    trainer: sweep_stage.Trainer,
    progress: sweep_stage.Progress,
) -> dict[str, Any]:
    """Writes trials.csv, summary.json, search.png and (with a best trial) best_params/ and
    best_hparams.json; returns the summary."""
    report.write_trials(os.path.join(workdir, "trials.csv"), records, sweep.space)
    ran = progress.ran
    summary = {
        "num_trials": len(records),
        "stages": stage_summaries,
        "border_warnings": [w for st in stage_summaries for w in st["border_warnings"]],
        "best": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "test_accuracy": None,
        "trials_run": ran,
        "interrupted_trials": progress.interrupted,
        "trials_per_second": ran / progress.train_seconds if ran else None,
        "sampler": sweep.sampler.name,
        "devices": trainer.mesh.size,
    }
    if best is None:
        logging.error(
            "no trial of any stage completed (all %d diverged): no best trial, no best params "
            "and no test accuracy; narrow the ranges (e.g. lower "
            "--config.search.space.learning_rate.high) and run again with a new --workdir",
            len(records),
        )
    else:
        summary.update(_evaluate_best(workdir, best, sweep.dataset, trainer, progress))
    summary["seconds"] = time.perf_counter() - progress.start
    metrics.write_json(os.path.join(workdir, "summary.json"), summary)
    plots.search_trials(records, sweep.space, os.path.join(workdir, "search.png"), best)
    return summary


def _evaluate_best(
    workdir: str,
    best: dict,
    dataset: data.Dataset,
    trainer: sweep_stage.Trainer,
    progress: sweep_stage.Progress,
) -> dict[str, Any]:
    """The best trial's test accuracy, with best_params/ and best_hparams.json written; the
    summary's entries for it."""
    best_params, best_setup = _best_params(workdir, best, trainer, progress)
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
    keys = ("hparams", "val_accuracy", "train_accuracy", "stage", "trial", "slot", "seed")
    keys += ("num_epochs",)
    return {
        "best": {k: best[k] for k in keys},
        "train_accuracy": best["train_accuracy"],
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": test_acc,
    }


def _best_params(
    workdir: str, best: dict, trainer: sweep_stage.Trainer, progress: sweep_stage.Progress
):
    """The best trial's params and run: from best_params/ if saved, else from this run's
    memory or retrained (a finished trial is deterministic in its seed and hparams), then
    saved there."""
    path, info = os.path.join(workdir, "best_params"), os.path.join(workdir, "best_hparams.json")
    setup = sweep_stage.setup_for(trainer.setup, best["hparams"], best["num_epochs"])
    ident = {"stage": best["stage"], "trial": best["trial"]}
    if (
        os.path.exists(info)
        and metrics.read_json(info).get("trial") == ident
        and checkpoints.steps(path, solo=_solo())
    ):
        like = jax.eval_shape(lambda: train.init_params(jax.random.key(0), setup))
        return checkpoints.restore(path, 0, like=like, solo=_solo()), setup
    kept = progress.best_params.get(best["stage"])
    if kept is not None and kept[1] == best["slot"]:
        params = kept[2]
    else:
        row = sweep_stage.trial_hparams(trainer.hparams, best["hparams"])
        state, _ = sharding.lead_fit(
            [best["seed"]], [row], trainer.data, setup, trainer.mesh, order_seed=best["order_seed"]
        )
        params = sharding.trial_params(state, 0)
    _save_params(path, params, trainer.owner)
    with contextlib.suppress(FileNotFoundError):
        os.remove(info)  # rewritten by report.write_best once the new params are in place
    return params, setup


def _save_params(path: str, params, owner: str) -> None:
    """Saves ``params`` to ``path`` through a temporary folder of its own (the processes of
    a sweep share its workdir): whole params or none, whichever process wins."""
    tmp = f"{path}.tmp-{owner.replace(':', '-')}"
    checkpoints.save(tmp, 0, params, solo=_solo())
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)
    except OSError:  # another process of the sweep put the same params there first
        shutil.rmtree(tmp, ignore_errors=True)


def _solo() -> bool:
    """Whether best_params/ is process 0's alone (a multi-process run: the others never
    reach it)."""
    return jax.process_count() > 1
