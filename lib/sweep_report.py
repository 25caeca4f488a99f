"""What a sweep reports: trials.csv, best_hparams.json, each stage's summary entry and
warnings (border, nothing learned, diverged), and durations for its progress lines.

Pure functions of the finished trials' records (``lib.search`` builds them), no training.
"""

from __future__ import annotations

import collections
import csv
import math
import os
from collections.abc import Mapping, Sequence
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
) -> dict[str, Any]:
    """A stage's entry of summary.json; logs its warnings (border, nothing learned,
    everything diverged). ``chance``: the validation set's majority-class rate and size."""
    ok = [r for r in records if r["status"] == "complete"]
    rows, scores = [r["hparams"] for r in ok], [r["value"] for r in ok]
    warnings = border_warnings(space, rows, scores, setup, configured=configured)
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
