"""The Optuna side of a sweep: storage, per-stage studies, resume checks and recovery.

A sweep's study ``<name>`` is one Optuna study per stage, ``<name>.stage<s>``, in a journal
file ``<workdir>/study.journal`` (default) or an RDB (``search.storage``). Each trial carries
user attrs ``owner`` (``host:pid:token`` of the process running it; written before the slot),
``slot`` (its index in the stage's plan) and, once told, ``result``.

Several processes may share one study: each re-reads the taken (RUNNING or COMPLETE) slots
right before asking a batch and skips them. A small race remains: two processes that read the
taken slots at the same moment, before either has asked, both run those slots; the duplicate
is harmless (``records`` keeps the first complete trial of each slot) but costs compute.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from lib.space import sample_grid, space_from_json

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
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as e:  # noqa: BLE001 (sqlalchemy raises many types for a bad URL)
            raise ValueError(
                f"cannot open search.storage={storage!r} ({type(e).__name__}: {e}); "
                f"use {STORAGE_FORMS}"
            ) from None
    backend = optuna.storages.journal.JournalFileBackend(os.path.join(workdir, "study.journal"))
    return optuna.storages.JournalStorage(backend)


def stage_name(study_name: str, stage: int) -> str:
    return f"{study_name}.stage{stage}"


def planned_slots(sampler: str, space, num: int) -> int:
    """How many slots a stage of ``num`` trials has (a grid rounds to a full grid)."""
    return len(sample_grid(space, num)) if sampler == "grid" else num


def check_stages(storage, study_name: str, stages: Sequence[tuple[int, int]], sampler: str) -> None:
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
    fix = "keep the finished stages as they were (only append stages or add trials) or choose a new --workdir"
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
            slots = planned_slots(sampler, space_from_json(attrs["space"]), num)
            if max(done) >= slots:
                raise ValueError(
                    f"stage {stage} of this study has {len(done)} finished trials (slots up to "
                    f"{max(done)}), search.stages now asks {num}; {fix}"
                )


def owner_alive(owner: str, me: str) -> bool:
    """Whether the process that left a trial RUNNING may still be working on it. A missing
    owner (a kill between ask and the first attr) counts as dead."""
    if not owner:
        return False
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


def recover(study, me: str) -> int:
    """Marks FAILED the trials an interrupted run left WAITING or RUNNING; returns how many."""
    count = 0
    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.tell(study.ask(), state=TrialState.FAIL)
        count += 1
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owner_alive(t.user_attrs.get("owner", ""), me):
            study.tell(t.number, state=TrialState.FAIL)
            count += 1
    return count


def taken_slots(study) -> set[int]:
    """Slots of trials that are RUNNING (here or elsewhere) or COMPLETE (re-read each call)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    return {t.user_attrs["slot"] for t in trials if "slot" in t.user_attrs}


def finished(study) -> list[Any]:
    """The COMPLETE trials, one per slot (the lowest trial number wins), ordered by slot."""
    out: dict[int, Any] = {}
    for t in sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number
    ):
        if "slot" in t.user_attrs and "result" in t.user_attrs:
            out.setdefault(t.user_attrs["slot"], t)
    return [out[k] for k in sorted(out)]


def make_sampler(name: str, seed: int, tpe_startup: int):
    """TPE (multivariate, constant liar, ``n_startup_trials`` explicit) or a RandomSampler
    (random and grid enqueue their own plan; Optuna only records it)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(
            constant_liar=True, multivariate=True, n_startup_trials=tpe_startup, seed=seed
        )
    return optuna.samplers.RandomSampler(seed)
