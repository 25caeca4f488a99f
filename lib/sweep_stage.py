"""One stage of a sweep: the value (``Stage``, built once by ``open_stage``) and running it.

A stage's slots are claimed, trained and told batch by batch (``run_stage``): each batch of
one structure is one vmapped, sharded ``train.fit`` (``lib.sharding``) whose trials share the
minibatch order ``seed`` (common random numbers), so TPE models each batch on the trials told
before it. What every batch of this process shares is a :class:`Trainer`; what it counts
over the sweep (the summary's counts, the progress lines' inputs, each stage's best params
kept in memory) is its :class:`Progress`. In a multi-process run all of this is process
0's: each batch it trains goes to the other processes too (``sharding.lead_fit``), which see
nothing else.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import optuna
from absl import logging
from jax.sharding import Mesh

from lib import interrupt, settings, sharding, train
from lib import study as studies
from lib import sweep_report as report
from lib.samplers import Earlier, Sampler
from lib.space import Space, distributions, structure

WAIT_SECONDS = 2.0  # between looks at trials other processes are running


class Stage(NamedTuple):
    """One stage of a sweep, built once: its range, sampler, slots, epochs and study."""

    index: int
    space: Space  # the range it samples (the one its study stored when first created)
    sampler: Sampler
    plan: list[dict[str, Any]]  # slot i's fixed params; {} where the sampler proposes them
    num_epochs: int
    study: Any  # optuna.Study
    dists: dict[str, Any]  # the space's Optuna distributions

    @property
    def num_trials(self) -> int:
        return len(self.plan)


def open_stage(
    storage,
    study_name: str,
    index: int,
    space: Space,
    num: int,
    num_epochs: int,
    sampler: Sampler,
    seed: int,
) -> Stage:
    """Stage ``index`` of ``num`` trials of ``num_epochs`` epochs over ``space``: its study
    (created on first use, with its range and epochs; the range it was first created with is
    authoritative) and its slots as ``sampler`` plans them."""
    study = studies.open_stage(storage, study_name, index)
    space = studies.stage_space(study, space, num_epochs)
    plan = sampler.plan(space, num, [seed, index])
    return Stage(index, space, sampler, plan, num_epochs, study, distributions(space))


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What every batch of this process's sweep shares."""

    setup: settings.Setup  # the config's run; a trial's structure replaces some fields
    hparams: dict[str, float]  # the config's hyperparameters; a trial's replace some
    seed: int  # search.seed: the trials' seeds and their shared minibatch order
    mesh: Mesh
    data: train.Data  # on every device of ``mesh``
    batch: int  # trials claimed per batch (search.trials_per_batch, padded to the devices)
    owner: str  # host:pid:token, written on every claimed trial
    tpe_startup: int
    callback: Callable[[int, list[dict]], None] | None
    keep: Callable[[int, list[dict]], None] | None = None  # each trained batch, before tell
    own_order_from: int | None = None  # trials of this stage on draw their own minibatch orders


@dataclasses.dataclass
class Progress:
    """What this process counts over the sweep, and each stage's best params (in memory)."""

    start: float  # perf_counter at the sweep's start
    planned: list[int]  # slots per stage (requested trials until a stage is opened)
    epochs: list[int]  # epochs per stage
    finished_before: int = 0  # finished trials of the stages before the current one
    ran: int = 0  # trials this process trained
    interrupted: int = 0  # trials of dead processes recovered
    train_seconds: float = 0.0
    best_params: dict[int, tuple[float, int, Any]] = dataclasses.field(default_factory=dict)
    waiting_for: int | None = None  # trials of other processes last waited for


def run_stage(stage: Stage, earlier: Earlier, trainer: Trainer, progress: Progress) -> list[dict]:
    """Runs what is left of ``stage`` (after recovering dead processes' trials and planning
    the open slots) and returns its finished trials as records (``record``), by slot.
    ``earlier``: the earlier stages' finished trials, for TPE."""
    progress.interrupted += studies.recover(stage.study, trainer.owner)
    _plan(stage)
    progress.planned[stage.index] = stage.num_trials
    logging.info(
        "stage %d (%d of %d): %d trials of %d epochs (%d already finished)",
        stage.index,
        stage.index + 1,
        len(progress.planned),
        stage.num_trials,
        stage.num_epochs,
        len(studies.finished(stage.study)),
    )
    t0 = time.perf_counter()
    progress.ran += _claim_train_tell(stage, earlier, trainer, progress)
    progress.train_seconds += time.perf_counter() - t0
    records = [record(stage.index, t) for t in studies.finished(stage.study)]
    progress.finished_before += len(records)
    return records


def record(stage: int, t) -> dict[str, Any]:
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


def _plan(stage: Stage) -> int:
    """Enqueues the stage's open slots, one structure after another (so claims come in
    batches of one structure); returns how many."""
    order = sorted(range(len(stage.plan)), key=lambda i: (repr(structure(stage.plan[i])), i))
    return studies.plan_slots(stage.study, stage.plan, order)


def _claim_train_tell(stage: Stage, earlier: Earlier, trainer: Trainer, progress: Progress) -> int:
    """Claims, trains and tells the stage's slots batch by batch; returns how many trials
    this process ran. Each batch is claimed after the one before it is told, so TPE models
    every batch on all trials finished before it; its trials' heartbeats are sent while it
    trains (``Heartbeat``). When no slot is left but other processes still run some of this
    stage's, waits for them (the next stage narrows around them)."""
    propose = _proposer(stage, earlier, trainer)
    _warn_one_batch(stage, earlier, trainer)
    full = min(trainer.batch, stage.num_trials)
    ran, seconds = 0, 0.0
    with Heartbeat(stage.study) as heartbeat:
        while True:
            interrupt.check()
            progress.interrupted += studies.recover(stage.study, trainer.owner)
            claimed = studies.claim(
                stage.study,
                trainer.batch,
                stage.num_trials,
                stage.dists,
                trainer.owner,
                propose,
                heartbeat,
            )
            if not claimed:
                if not _wait_for_others(stage, trainer, progress):
                    return ran
                continue
            t0 = time.perf_counter()
            done = _train(claimed, stage, full, trainer)
            for r in done:
                _tell(stage, r, progress)
            heartbeat.release(t for t, _ in claimed)
            ran += len(done)
            seconds += time.perf_counter() - t0
            _log_progress(stage, ran * stage.num_epochs, seconds, progress)


def _train(claimed, stage: Stage, full: int, trainer: Trainer) -> list[dict]:
    """Trains the claimed trials, one program per structure, then calls the callback."""
    groups: dict[tuple, list] = {}
    for trial, slot in claimed:
        groups.setdefault(structure(trial.params), []).append((trial, slot, trial.params))
    done = [
        r
        for items in groups.values()
        for r in _run_batch(items, stage.index, stage.num_epochs, full, trainer)
    ]
    if trainer.callback is not None:
        trainer.callback(stage.index, [{"slot": r["slot"], **r["result"]} for r in done])
    if trainer.keep is not None:
        trainer.keep(stage.index, done)
    return done


def _proposer(stage: Stage, earlier: Earlier, trainer: Trainer):
    """The sampler's ``propose`` for ``studies.claim`` (None when slots carry their params):
    the params, and which stage's trials it modelled (user attr ``model``: ``random``
    during a first stage's start-up)."""
    if stage.sampler.propose is None:
        return None

    def propose(study, number):
        seed = studies.trial_seed(trainer.seed, stage.index, number)
        params, source = stage.sampler.propose(
            study, stage.dists, earlier, seed, trainer.tpe_startup
        )
        return params, {"model": "random" if source is None else f"stage {source}"}

    return propose


def _warn_one_batch(stage: Stage, earlier: Earlier, trainer: Trainer) -> None:
    """A sampler that models finished trials, with none to model but its own, learns nothing
    when the whole stage is claimed as one batch."""
    if stage.sampler.propose is not None and not earlier and trainer.batch >= stage.num_trials:
        logging.warning(
            "stage %d: %s claims all %d trials as one batch (search.trials_per_batch=%d), so "
            "none is modelled on another; set search.trials_per_batch below %d",
            stage.index,
            stage.sampler.name,
            stage.num_trials,
            trainer.batch,
            stage.num_trials,
        )


def setup_for(base: settings.Setup, row: Mapping[str, Any], num_epochs: int) -> settings.Setup:
    """The run of a trial: ``base`` with the trial's structure (epochs, hidden, optimizer)."""
    return dataclasses.replace(
        base,
        num_epochs=int(row.get("num_epochs", num_epochs)),
        hidden=int(row.get("hidden", base.hidden)),
        optimizer=row.get("optimizer", base.optimizer),
    )


def trial_hparams(base: Mapping[str, float], row: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a trial: ``base`` with the trial's (not its structure)."""
    return {**base, **{k: v for k, v in row.items() if k in settings.HPARAMS}}


def _run_batch(items, stage: int, num_epochs: int, full: int, trainer: Trainer) -> list[dict]:
    """Trains claimed trials ``items`` ([(trial, slot, row)], one structure) in one program;
    ``full`` is the stage's full batch size."""
    setup = setup_for(trainer.setup, items[0][2], num_epochs)
    rows = [trial_hparams(trainer.hparams, row) for _, _, row in items]
    seeds = [studies.trial_seed(trainer.seed, stage, slot) for _, slot, _ in items]
    # Lanes: a power of two, at least a quarter of the stage's batch (few distinct shapes,
    # so few compiles), at most the batch.
    lanes = min(full, max(1 << (len(items) - 1).bit_length(), full // 4))
    own = trainer.own_order_from is not None and stage >= trainer.own_order_from
    order_seed = None if own else trainer.seed
    t0 = time.perf_counter()
    state, history = sharding.lead_fit(  # in a multi-process sweep, every process trains it
        seeds, rows, trainer.data, setup, trainer.mesh, lanes, order_seed=order_seed
    )
    share = (time.perf_counter() - t0) / len(items)
    diverged = sharding.diverged(history)
    out = []
    for j, (trial, slot, _) in enumerate(items):
        div_epoch = int(np.argmin(train.finite(history)[j])) + 1 if diverged[j] else None
        result = {
            "status": "diverged" if diverged[j] else "complete",
            "seed": seeds[j],
            "order_seed": order_seed,  # None: the trial's own order, from its seed
            "num_epochs": setup.num_epochs,
            "seconds": share,
            "diverged_epoch": div_epoch,
            "train_accuracy": float(history["train_accuracy"][j, -1]),
            "val_accuracy": float(history["val_accuracy"][j, -1]),
            "val_accuracy_per_epoch": [float(v) for v in history["val_accuracy"][j]],
        }
        params = sharding.trial_params(state, j)
        curves = {k: np.asarray(v[j]) for k, v in history.items()}
        ema = jax.tree.map(lambda a, j=j: np.asarray(a[j]), state.ema) if setup.ema else None
        out.append(
            {
                "trial": trial,
                "slot": slot,
                "result": result,
                "params": params,
                "history": curves,
                "ema": ema,
            }
        )
    return out


def _tell(stage: Stage, r: dict, progress: Progress) -> None:
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
    best = progress.best_params.get(stage.index)
    if complete and (best is None or (value, -r["slot"]) > (best[0], -best[1])):
        progress.best_params[stage.index] = (value, r["slot"], r["params"])


def _wait_for_others(stage: Stage, trainer: Trainer, progress: Progress) -> bool:
    """Whether to claim again: True when trials of processes that died were planned or queued
    again, or (after a pause) while other live processes run trials of this stage; False
    when no trial of the stage is left anywhere."""
    progress.interrupted += studies.recover(stage.study, trainer.owner)
    if _plan(stage) or studies.has_waiting(stage.study):  # planned again, or queued again
        return True
    others = studies.running_elsewhere(stage.study, trainer.owner)
    if not others:
        return False
    if others != progress.waiting_for:
        logging.info(
            "stage %d: waiting for %d trials other processes are running", stage.index, others
        )
        progress.waiting_for = others
    sharding.keep_followers_waiting()  # a multi-process sweep's other processes wait too
    time.sleep(WAIT_SECONDS)
    return True


def _log_progress(stage: Stage, trial_epochs: int, seconds: float, progress: Progress) -> None:
    """One line after a batch: trials done / planned, this stage's best val accuracy, the
    time elapsed and an ETA: the trial-epochs left in every stage at the rate (seconds per
    trial-epoch) this process measured in this stage."""
    planned, epochs, i = progress.planned, progress.epochs, stage.index
    here = len(studies.finished(stage.study))
    left = (planned[i] - here) * stage.num_epochs + sum(
        n * e for n, e in zip(planned[i + 1 :], epochs[i + 1 :])
    )
    logging.info(
        "stage %d (%d of %d): %d/%d trials done (%d/%d of this stage, %d epochs each), best "
        "val acc %.4f, %s elapsed, ETA %s",
        i,
        i + 1,
        len(planned),
        progress.finished_before + here,
        sum(planned),
        here,
        planned[i],
        stage.num_epochs,
        stage.study.best_value if here else float("nan"),
        report.duration(time.perf_counter() - progress.start),
        report.duration(max(left, 0) * seconds / trial_epochs),
    )


class Heartbeat:
    """The heartbeats of the trials this process runs, for an RDB storage (``lib.study``).

    While its block runs (``with Heartbeat(study) as heartbeat:``), a daemon thread records a
    heartbeat for each trial held every heartbeat interval, so a batch that trains for longer
    than the grace period is not taken for a dead process's. ``hold`` (``studies.claim``)
    records one at once and adds a trial; ``release`` drops trials once told. Optuna sends
    them only from ``study.optimize``, which a sweep does not use. Does nothing for a storage
    without heartbeats (the journal file).
    """

    def __init__(self, study):
        self._storage = study._storage
        self._enabled = studies.has_heartbeats(study)
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self):
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def hold(self, trial) -> None:
        if self._enabled:
            self._storage.record_heartbeat(trial._trial_id)
            with self._lock:
                self._held.add(trial._trial_id)

    def release(self, trials: Iterable[Any]) -> None:
        with self._lock:
            self._held.difference_update(t._trial_id for t in trials)

    def _run(self) -> None:
        while not self._stop.wait(self._storage.get_heartbeat_interval()):
            with self._lock:
                held = sorted(self._held)
            try:
                for trial_id in held:
                    self._storage.record_heartbeat(trial_id)
            except Exception as e:  # noqa: BLE001 (a lost connection: the next beat retries)
                logging.warning("heartbeat not recorded (%s: %s)", type(e).__name__, e)
