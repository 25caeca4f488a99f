"""What a sweep reports: trials.csv, best_hparams.json, each stage's summary entry and
warnings (border, nothing learned, diverged), and durations for its progress lines.

Pure functions of the finished trials' records (``lib.search`` builds them), no training.
"""

from __future__ import annotations

import collections
import csv
import math
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from absl import logging

from lib import metrics, settings
from lib.narrowing import border_warnings
from lib.space import Space, space_to_json

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


def best_trial(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The complete trial with the highest validation accuracy, then the lowest slot (so the
    choice does not depend on how many processes shared the sweep); None if none is."""
    ok = [r for r in records if r["status"] == "complete"]
    return max(ok, key=lambda r: (r["value"], -r["slot"])) if ok else None


def stage_summary(
    index: int,
    space: Space,
    num_epochs: int,
    records: list[dict],
    configured: Space,
    setup: settings.Setup,
    chance: tuple[float, int],
    skip: Collection[str] = (),
) -> dict[str, Any]:
    """A stage's entry of summary.json; logs its warnings (border, nothing learned,
    everything diverged). ``chance``: the validation set's majority-class rate and size;
    ``skip``: hyperparameters whose borders are not warned of."""
    ok = [r for r in records if r["status"] == "complete"]
    rows, scores = [r["hparams"] for r in ok], [r["value"] for r in ok]
    warnings = [
        w
        for w in border_warnings(space, rows, scores, setup, configured=configured)
        if w.split(":")[0] not in skip
    ]
    warnings += nothing_learned(records, *chance, configured)
    warnings = [f"stage {index}: {w}" for w in warnings]
    for w in warnings:
        logging.warning("%s", w)
    best = best_trial(records)
    return {
        "num_trials": len(records),
        "num_epochs": num_epochs,
        "space": space_to_json(space),
        "border_warnings": warnings,
        "diverged": len(records) - len(ok),
        "model": dict(collections.Counter(r["model"] for r in records if r["model"])),
        "best": best
        and {k: best[k] for k in ("trial", "hparams", "val_accuracy", "train_accuracy")},
    }


def nothing_learned(
    records: Sequence[Mapping[str, Any]], chance: float, num_val: int, space: Space
) -> list[str]:
    """A warning when no complete trial of a stage clearly beats the chance level, with the
    likely fix; [] otherwise.

    Chance is the validation set's majority-class rate p; "clearly" means by at least
    ``max(0.2 (1 - p), 3 sqrt(p (1 - p) / num_val))`` (a fifth of the way to perfect, and
    well outside the sampling noise of ``num_val`` examples; an untrained linear model on
    digits scores about 0.19 against p = 0.10). When every trial diverged, or
    the trials that did not diverge learned nothing while others diverged, the learning-rate
    range is likely too high; when none diverged, too low.
    """
    if not records:
        return []
    ok = [r for r in records if r["status"] == "complete"]
    margin = max(0.2 * (1 - chance), 3 * math.sqrt(chance * (1 - chance) / num_val))
    if ok and max(r["val_accuracy"] for r in ok) >= chance + margin:
        return []
    level = f"the chance level {chance:.3f} (the validation set's majority-class rate)"
    if not ok:
        what = f"all {len(records)} trials diverged (NaN/inf loss)"
    elif len(ok) < len(records):
        what = f"{len(records) - len(ok)} of {len(records)} trials diverged and none beat {level}"
    else:
        best = max(r["val_accuracy"] for r in ok)
        what = (
            f"nothing learned: the best val accuracy {best:.4f} is within {margin:.3f} of {level}"
        )
    too_high = len(ok) < len(records)
    lr = space.get("learning_rate")
    if lr is None or lr.scale == "choice":
        fix = ("lower" if too_high else "raise") + " --config.optimizer.learning_rate"
    else:
        low, high = (lr.low / 1e4, lr.low) if too_high else (lr.high, lr.high * 1e4)
        fix = (
            f"the learning-rate range [{lr.low:.3g}, {lr.high:.3g}] is likely too "
            f"{'high' if too_high else 'low'}: move it, e.g. "
            f"--config.search.space.learning_rate.low={low:.3g} "
            f"--config.search.space.learning_rate.high={high:.3g}"
        )
    return [f"{what}; {fix}, with a new --workdir"]


def write_best(workdir: str, best: dict, test_accuracy: float) -> None:
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


def write_trials(path: str, records: list[dict], space: Space) -> None:
    """trials.csv: one row per finished trial, ``TRIAL_COLUMNS`` and a column per searched
    hyperparameter, written atomically."""
    names = sorted(n for n in space if n != "num_epochs")  # num_epochs has its own column
    with metrics.atomic(path, newline="") as f:
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


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- reading back

_INT_FIELDS = ("hidden", "num_epochs", "batch_size", "seed")
_STR_FIELDS = ("optimizer", "model", "loss", "schedule")


def _parse(name: str, value: str) -> Any:
    if name in _STR_FIELDS:
        return value
    number = float(value)
    return round(number) if name in _INT_FIELDS else number


def read_trials(search_dir: str) -> list[dict[str, Any]]:
    """The complete trials of a sweep workdir, best validation accuracy first.

    Reads ``<search_dir>/trials.csv`` as ``lib.search`` writes it: the columns
    ``TRIAL_COLUMNS``, then one column per search-space name (a
    ``settings.CONFIG_PATHS`` name: ``learning_rate``, ``reg``, ``hidden``, ``optimizer``,
    ...). Rows whose ``status`` is ``complete`` are kept (not ``diverged``). Each returned
    dict has ``trial`` (``"<trial> (stage <stage>)"``), ``val_accuracy``, ``seed`` (the
    trial's key is ``jax.random.key(seed)``), ``order_seed`` (its minibatch-order key; None:
    the trial drew its own order from its seed) and
    ``fields`` (CONFIG_PATHS name -> value: the seed, the epochs and the space's
    hyperparameters).
    """
    if not search_dir:
        raise ValueError(
            "source 'search' needs a sweep workdir: set "
            "--config.ensemble.search_dir=<workdir of experiments.sweep>"
        )
    if not os.path.isdir(search_dir):
        raise FileNotFoundError(
            f"sweep workdir {search_dir!r} does not exist; run "
            f"python -m experiments.sweep --workdir={search_dir} first"
        )
    path = os.path.join(search_dir, "trials.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no trials.csv in {search_dir!r} (expected one row per trial, "
            "written by experiments.sweep); finish the sweep or point "
            "--config.ensemble.search_dir at a finished one"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no trials; run the sweep first")
    columns = set(rows[0])
    missing = [c for c in TRIAL_COLUMNS if c not in columns]
    unknown = sorted(columns - set(TRIAL_COLUMNS) - set(settings.CONFIG_PATHS))
    if missing or unknown:
        raise ValueError(
            f"{path} is not a trials.csv of experiments.sweep (missing columns {missing}, "
            f"unknown columns {unknown}); point --config.ensemble.search_dir at a sweep workdir"
        )
    space = sorted(columns - set(TRIAL_COLUMNS))
    trials = []
    for row in rows:
        if row["status"] != "complete":
            continue
        fields = {name: _parse(name, row[name]) for name in ("seed", "num_epochs", *space)}
        trials.append(
            {
                "trial": f"{row['trial']} (stage {row['stage']})",  # numbers restart per stage
                "stage": int(row["stage"]),
                "val_accuracy": float(row["val_accuracy"]),
                "seed": fields["seed"],
                "order_seed": int(row["order_seed"]) if row["order_seed"] else None,
                "fields": fields,
            }
        )
    trials.sort(key=lambda t: -t["val_accuracy"])  # stable: ties keep file order
    return trials


STAGES = ("last", "all")  # ensemble.search_stages: which stages' trials may be members


def top_trials(search_dir: str, size: int, stages: str = "last") -> list[dict[str, Any]]:
    """The ``size`` complete trials with the highest validation accuracy, of the last stage
    that has complete trials (``stages="last"``: members trained alike, for the most epochs)
    or of every stage (``"all"``: a short trial of an early stage may rank high)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(
            f"ensemble size must be a positive integer, got {size!r}; set --config.ensemble.size"
        )
    if stages not in STAGES:
        raise ValueError(
            f"ensemble.search_stages={stages!r} is not one of {', '.join(STAGES)}; "
            "set --config.ensemble.search_stages=last"
        )
    trials = read_trials(search_dir)
    if stages == "last" and trials:
        last = max(t["stage"] for t in trials)
        trials = [t for t in trials if t["stage"] == last]
    if size > len(trials):
        where = "" if stages == "all" else " of its last stage"
        raise ValueError(
            f"ensemble size {size} is larger than the {len(trials)} complete trials{where} "
            f"in {search_dir!r}; set --config.ensemble.size={len(trials)} or less, "
            "or run more trials"
        )
    return trials[:size]
