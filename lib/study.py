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

A dead process leaves its trials RUNNING (``recover``): with the journal file (one machine)
the next process to look finds the owner's process gone; an RDB storage has heartbeats for
processes on any machine (``lib.sweep_stage.Heartbeat`` sends them while a batch trains).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
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
HEARTBEAT_INTERVAL, GRACE_PERIOD = 10, 60  # seconds: search.heartbeat_interval, grace_period
_SCHEMA_LOCK = 0x5C0AE1AB  # the PostgreSQL advisory lock held while the tables are created
# Optuna >= 4.9's name for the stale-trial retry and its argument, else the older one.
_RETRY, _CALLBACK = (
    (optuna.storages.RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback")
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    else (optuna.storages.RetryFailedTrialCallback, "failed_trial_callback")
)


def heartbeat_from_config(search: Any) -> tuple[int, int]:
    """``(search.heartbeat_interval, search.grace_period)``: raises ValueError unless both are
    whole seconds >= 1 and the grace period is the longer."""
    interval = search.get("heartbeat_interval", HEARTBEAT_INTERVAL)
    grace = search.get("grace_period", GRACE_PERIOD)
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (interval, grace))
    if not whole or interval < 1 or grace <= interval:
        raise ValueError(
            f"search.heartbeat_interval={interval!r} and search.grace_period={grace!r}: both "
            "must be whole seconds, the grace period longer than the interval (defaults "
            f"{HEARTBEAT_INTERVAL} and {GRACE_PERIOD})"
        )
    return interval, grace


def open_storage(storage: str | None, workdir: str, heartbeat=(HEARTBEAT_INTERVAL, GRACE_PERIOD)):
    """An RDB storage for the URL ``storage`` with heartbeats every ``heartbeat`` = (interval,
    grace period) seconds, or (default) the journal ``<workdir>/study.journal``.

    Raises:
      ValueError: a URL that Optuna's RDBStorage cannot open (the accepted forms are named),
        or whose database driver is not installed (how to install it is named).
    """
    if not storage:
        path = os.path.join(workdir, "study.journal")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    sqlite = storage.startswith("sqlite")
    # SQLite serialises writers: several processes sharing one file wait up to a minute
    # for the lock instead of the driver's default 5 s.
    kwargs = {"connect_args": {"timeout": 60}} if sqlite else {}
    try:
        with warnings.catch_warnings(), _schema_lock(storage, kwargs):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(
                storage,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat[0],
                grace_period=heartbeat[1],
                **{_CALLBACK: _Requeue()},
            )
    except ImportError as e:
        raise ValueError(
            f"cannot open search.storage={storage!r}: its database driver is not installed "
            f'({e.__cause__ or e}); install it (PostgreSQL: pip install -e ".[postgres]")'
        ) from None
    except Exception as e:  # noqa: BLE001 (sqlalchemy raises many types for a bad URL)
        raise ValueError(
            f"cannot open search.storage={storage!r} ({type(e).__name__}: {e}); use {STORAGE_FORMS}"
        ) from None
    if sqlite:
        _begin_immediate(rdb.engine)
    return rdb


@contextlib.contextmanager
def _schema_lock(url: str, engine_kwargs: dict):
    """A PostgreSQL advisory lock held while the block opens the storage: processes opening one
    empty database at once create its tables in turn, not all but one failing on a unique
    violation (CREATE TYPE studydirection ... already exists). Elsewhere: nothing."""
    if sqlalchemy.engine.make_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **engine_kwargs)
    try:
        with engine.connect() as connection:  # closing it releases the lock
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})"))
            yield
    finally:
        engine.dispose()


class _Requeue:
    """An RDB storage's stale-trial callback: Optuna's retry (a WAITING copy of the trial with
    its params and user attrs, so its slot), counted for ``recover`` (in this process)."""

    count = 0

    def __call__(self, study, trial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            _RETRY()(study, trial)
        _Requeue.count += 1


def _begin_immediate(engine) -> None:
    """Makes every SQLite transaction take the write lock first (``BEGIN IMMEDIATE``): a claim
    reads a WAITING trial and marks it RUNNING in one transaction; other databases lock the
    row (``SELECT ... FOR UPDATE``), SQLite ignores that, so two processes could both claim
    the slot. Locking at the start makes the read and the write one step (SQLAlchemy's recipe
    for pysqlite: the driver's own BEGIN is turned off, ours is emitted instead)."""

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


def owner_alive(
    owner: str, me: str, started: datetime.datetime | None = None, heartbeats: bool = False
) -> bool:
    """Whether the process that left a trial RUNNING may still be working on it: with
    ``heartbeats`` (an RDB storage: they decide, ``recover``) or on another machine, yes;
    on this one, if the owner's process exists. A trial with no owner yet (a kill between
    the claim and the owner written right after it) is alive ``OWNER_GRACE_SECONDS``."""
    if not owner:
        if started is None:
            return False
        now = datetime.datetime.now(started.tzinfo)
        return (now - started).total_seconds() < OWNER_GRACE_SECONDS
    host, pid, token = (owner.split(":") + ["", "", ""])[:3]
    my_host, my_pid, my_token = me.split(":")
    if heartbeats or host != my_host:
        return True
    if pid == my_pid:
        return token == my_token
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


OWNER_GRACE_SECONDS = 30.0


def has_heartbeats(study) -> bool:
    """Whether the study's storage records heartbeats (an RDB storage, ``open_storage``)."""
    return optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)


def recover(study, me: str) -> int:
    """Makes the RUNNING trials of dead processes run again; returns how many. With heartbeats
    a trial silent past the grace period is failed and queued again with its slot (Optuna's
    ``fail_stale_trials``, by the one process that fails it); a trial whose process is gone
    (``owner_alive``) is told FAIL, its slot planned again by the next ``plan_slots``."""
    beats, count = has_heartbeats(study), 0
    if beats:
        before = _Requeue.count
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        count = _Requeue.count - before
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owner_alive(t.user_attrs.get("owner", ""), me, t.datetime_start, beats):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            count += 1
    return count


def running_elsewhere(study, me: str) -> int:
    """How many trials of ``study`` other live processes are running."""
    beats = has_heartbeats(study)
    return sum(
        t.user_attrs.get("owner") != me
        and owner_alive(t.user_attrs.get("owner", ""), me, t.datetime_start, beats)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def has_waiting(study) -> bool:
    """Whether ``study`` has WAITING trials (slots planned, or trials queued again)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


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
    heartbeat: Any = None,
) -> list[tuple[Any, int]]:
    """Claims up to ``num`` WAITING slots (below ``slots``) for ``owner``: [(trial, slot)].

    Each claim pops one WAITING trial atomically (``study.ask``). A popped copy of a slot
    that a lower-numbered live trial holds, or a slot past ``slots`` (the stage shrank), is
    told FAIL and skipped. With ``propose`` (TPE), ``propose(study, number)`` then gives the
    params (unless queued again with its own) and user attrs of a popped trial, computed
    from the trials claimed before it; its ``number`` (unique in the study, in every
    process) seeds the proposal, so no two claims draw alike. ``heartbeat`` (``Heartbeat``
    of lib.sweep_stage) holds each claimed trial before its owner is written.
    """
    out = []
    while len(out) < num and has_waiting(study):
        with warnings.catch_warnings():  # heartbeats are sent by ``Heartbeat``, not optimize
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
            trial = study.ask()
        slot = trial.user_attrs.get("slot")
        if slot is None or slot >= slots or _copy_of_earlier_trial(study, trial.number, slot):
            trial.set_user_attr("dropped", "not a slot of this stage, or a copy of one")
            study.tell(trial, state=TrialState.FAIL)
            continue
        if heartbeat is not None:
            heartbeat.hold(trial)
        trial.set_user_attr("owner", owner)
        if propose is not None and not trial.params:
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
