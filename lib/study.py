"""The Optuna side of a sweep: storage, per-stage studies, slots claimed atomically, resume
checks and recovery.

A sweep's study ``<name>`` is one Optuna study per stage, ``<name>.stage<s>``, in a journal
file ``<workdir>/study.journal`` (default) or an RDB (``search.storage``). A stage's planned
trials are its *slots*: ``plan_slots`` enqueues one WAITING trial per slot (user attr
``slot``; for random and grid search also the trial's fixed params). A process claims a slot
by popping a WAITING trial with ``study.ask``, which the journal and RDB storages make
atomic, then writes its ``owner`` (``host:pid:token``); once trained the trial is told with
user attr ``result``. So several processes can share one study and never run one slot twice:
if two of them planned a slot at the same moment, the slot's lowest-numbered live trial is
the one that runs and a later copy is dropped (told FAIL) when popped.

TPE's proposals (``lib.samplers.propose_tpe``) are made when a slot is claimed (``claim``'s
``propose``), so each models the trials told before it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from lib.space import Space, space_from_json, space_to_json

if TYPE_CHECKING:
    from lib.samplers import Sampler

STORAGE_FORMS = (
    "sqlite:///path/to/study.db, postgresql://user:password@host/db (any SQLAlchemy URL "
    "Optuna's RDBStorage accepts), or unset for <workdir>/study.journal"
)


def open_storage(storage: str | None, workdir: str):
    """An RDB storage for the URL ``storage``, or (default) the journal ``<workdir>/study.journal``.

    Raises:
      ValueError: a URL that Optuna's RDBStorage cannot open (the accepted forms are named).
    """
    if storage:
        sqlite = storage.startswith("sqlite")
        # SQLite serialises writers: several processes sharing one file wait up to a minute
        # for the lock instead of the driver's default 5 s.
        kwargs = {"connect_args": {"timeout": 60}} if sqlite else {}
        try:
            rdb = optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)
        except Exception as e:  # noqa: BLE001 (sqlalchemy raises many types for a bad URL)
            raise ValueError(
                f"cannot open search.storage={storage!r} ({type(e).__name__}: {e}); "
                f"use {STORAGE_FORMS}"
            ) from None
        if sqlite:
            _begin_immediate(rdb.engine)
        return rdb
    backend = optuna.storages.journal.JournalFileBackend(os.path.join(workdir, "study.journal"))
    return optuna.storages.JournalStorage(backend)


def _begin_immediate(engine) -> None:
    """Makes every SQLite transaction take the write lock first (``BEGIN IMMEDIATE``).

    Claiming a slot reads a WAITING trial and marks it RUNNING in one transaction; other
    databases lock the row (``SELECT ... FOR UPDATE``), SQLite ignores that, so two
    processes could both read WAITING and both claim the slot. Taking the lock at the
    start of the transaction makes the read and the write one step (SQLAlchemy's recipe
    for pysqlite: the driver's own BEGIN is turned off, ours is emitted instead).
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the hooks are not reused


def stage_name(study_name: str, stage: int) -> str:
    return f"{study_name}.stage{stage}"


def check_stages(
    storage, study_name: str, stages: Sequence[tuple[int, int]], sampler: Sampler
) -> None:
    """Refuses a config that would change or drop finished work of a stored study.

    Raises:
      ValueError: a stored stage ran other epochs; a stored stage with finished trials is no
        longer in ``stages``; or a stage now has fewer slots than its finished trials use.
    """
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    prefix = f"{study_name}.stage"
    stored = sorted(
        int(n[len(prefix) :])
        for n in summaries
        if n.startswith(prefix) and n[len(prefix) :].isdigit()
    )
    fix = (
        "keep the finished stages as they were (only append stages or add trials) or choose "
        "a new --workdir"
    )
    for stage in stored:
        attrs = summaries[stage_name(study_name, stage)].user_attrs
        study = optuna.load_study(study_name=stage_name(study_name, stage), storage=storage)
        done = [
            t.user_attrs["slot"]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "slot" in t.user_attrs
        ]
        if stage >= len(stages):
            if done:
                raise ValueError(
                    f"the study holds stage {stage} with {len(done)} finished trials, but "
                    f"search.stages now has {len(stages)} stages; {fix}"
                )
            continue
        num, num_epochs = stages[stage]
        old = attrs.get("num_epochs", num_epochs)
        if old != num_epochs:
            raise ValueError(
                f"stage {stage} of this study ran {old} epochs, search.stages now asks "
                f"{num_epochs}; {fix}"
            )
        if done and "space" in attrs:
            slots = sampler.num_slots(space_from_json(attrs["space"]), num)
            if max(done) >= slots:
                raise ValueError(
                    f"stage {stage} of this study has {len(done)} finished trials (slots up to "
                    f"{max(done)}), search.stages now asks {num}; {fix}"
                )


def owner_alive(owner: str, me: str, started: datetime.datetime | None = None) -> bool:
    """Whether the process that left a trial RUNNING may still be working on it.

    A trial with no owner yet was claimed by a process that wrote nothing else: alive for
    ``OWNER_GRACE_SECONDS`` after it started (the owner is written right after the claim),
    dead after that (a kill between the two).
    """
    if not owner:
        if started is None:
            return False
        now = datetime.datetime.now(started.tzinfo)
        return (now - started).total_seconds() < OWNER_GRACE_SECONDS
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


OWNER_GRACE_SECONDS = 30.0


def recover(study, me: str) -> int:
    """Marks FAIL the RUNNING trials whose process is gone; returns how many. Their slots
    are planned again by the next ``plan_slots``."""
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owner_alive(t.user_attrs.get("owner", ""), me, t.datetime_start):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            count += 1
    return count


def running_elsewhere(study, me: str) -> int:
    """How many trials of ``study`` other live processes are running."""
    return sum(
        t.user_attrs.get("owner") != me
        and owner_alive(t.user_attrs.get("owner", ""), me, t.datetime_start)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def plan_slots(study, plan: Sequence[dict[str, Any]], order: Sequence[int] | None = None) -> int:
    """Enqueues a WAITING trial for every slot of ``plan`` that has no live trial (WAITING,
    RUNNING or COMPLETE): a new stage's slots, those of trials that failed or were
    interrupted, and slots a stage gained. ``plan[i]`` is slot i's fixed params ({} where
    TPE proposes them when the slot is claimed); ``order``: the order to enqueue them in
    (claims pop in that order). Returns how many were enqueued."""
    live = {
        t.user_attrs["slot"]
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.FAIL and "slot" in t.user_attrs
    }
    missing = [i for i in (range(len(plan)) if order is None else order) if i not in live]
    for i in missing:
        study.enqueue_trial(dict(plan[i]), user_attrs={"slot": i})
    return len(missing)


class _Preset(optuna.samplers.BaseSampler):
    """The stages' sampler: returns the params set in ``values`` (a TPE proposal). Random and
    grid slots carry fixed params, so they never reach it."""

    def __init__(self):
        self.values: dict[str, Any] = {}

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name in self.values:
            return self.values[param_name]
        if isinstance(param_distribution, optuna.distributions.CategoricalDistribution):
            return param_distribution.choices[0]
        return param_distribution.low


def open_stage(storage, study_name: str, stage: int):
    """The study of one stage (created on first use), with the sampler ``claim`` drives."""
    return optuna.create_study(
        storage=storage,
        study_name=stage_name(study_name, stage),
        sampler=_Preset(),
        direction="maximize",
        load_if_exists=True,
    )


def stage_space(study, space: Space, num_epochs: int) -> Space:
    """The range a stage samples: the one stored when its study was created (authoritative:
    a resumed stage keeps it), else ``space``, stored now with the stage's epochs."""
    if "space" in study.user_attrs:
        return space_from_json(study.user_attrs["space"])
    study.set_user_attr("space", space_to_json(space))
    study.set_user_attr("num_epochs", num_epochs)
    return space


def _copy_of_earlier_trial(study, number: int, slot: int) -> bool:
    return any(
        t.number < number and t.state != TrialState.FAIL and t.user_attrs.get("slot") == slot
        for t in study.get_trials(deepcopy=False)
    )


def claim(
    study,
    num: int,
    slots: int,
    dists: dict[str, Any],
    owner: str,
    propose: Callable[[Any, int], tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> list[tuple[Any, int]]:
    """Claims up to ``num`` WAITING slots (below ``slots``) for ``owner``: [(trial, slot)].

    Each claim pops one WAITING trial atomically (``study.ask``). A popped copy of a slot
    that a lower-numbered live trial holds, or a slot past ``slots`` (the stage shrank), is
    told FAIL and skipped. With ``propose`` (TPE), ``propose(study, number)`` then gives the
    popped trial's params and user attrs, computed from the trials claimed before it; its
    trial ``number`` (unique in the study, in every process) seeds the proposal, so no two
    claims draw alike.
    """
    out = []
    while len(out) < num:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            break
        trial = study.ask()
        slot = trial.user_attrs.get("slot")
        if slot is None or slot >= slots or _copy_of_earlier_trial(study, trial.number, slot):
            trial.set_user_attr("dropped", "not a slot of this stage, or a copy of one")
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("owner", owner)
        if propose is not None:
            study.sampler.values, attrs = propose(study, trial.number)
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        _suggest(trial, dists)
        out.append((trial, slot))
    return out


def _suggest(trial, dists: dict[str, Any]) -> None:
    """Sets every param of ``trial``: an enqueued slot's fixed value, else the sampler's."""
    for name, d in dists.items():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            trial.suggest_categorical(name, d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution):
            trial.suggest_int(name, d.low, d.high, log=d.log)
        else:
            trial.suggest_float(name, d.low, d.high, log=d.log)


def finished(study) -> list[Any]:
    """The COMPLETE trials, one per slot (the lowest trial number wins), ordered by slot."""
    out: dict[int, Any] = {}
    for t in sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number
    ):
        if "slot" in t.user_attrs and "result" in t.user_attrs:
            out.setdefault(t.user_attrs["slot"], t)
    return [out[k] for k in sorted(out)]


def trial_seed(*parts: int) -> int:
    """A 63-bit seed drawn from the integers ``parts`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)
