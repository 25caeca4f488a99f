"""report.md: one page a person reads about a tune (``lib.tune``): what was searched, what
was found, the members' table, the figures and the warnings. A pure function of the summary
(and of which figures the workdir holds)."""

from __future__ import annotations

import os
from typing import Any

from lib import metrics

_FIGURES = (
    ("search.png", "every trial: validation accuracy over the searched values, by stage"),
    ("curves.png", "the best model's loss and accuracy per epoch"),
    ("templates.png", "the best model's class templates (rows of W as images)"),
    ("first_layer.png", "the best model's first-layer weights as images"),
    ("ensemble.png", "each member's accuracy against the ensemble's"),
)


def _range(entry: dict) -> str:
    if "choices" in entry:
        return ", ".join(str(c) for c in entry["choices"])
    return f"[{entry['low']:.3g}, {entry['high']:.3g}] {entry['scale']}"


def _searched(summary: dict[str, Any]) -> list[str]:
    stages = summary["stages"]
    lines = [
        "## What was searched",
        "",
        (
            f"{summary['dataset']}; features preprocessed: `{summary['preprocess']}`. "
            f"Model `{summary['model']}`, loss `{summary['loss']}`, optimizer "
            f"`{summary['optimizer']}`; sampler `{summary['sampler']}`."
        ),
        "",
        "| stage | trials | epochs | configuration-epochs | seconds | best val acc | ranges |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, st in enumerate(stages):
        best = st["best"]["val_accuracy"] if st.get("best") else float("nan")
        ranges = "; ".join(f"{n} {_range(e)}" for n, e in sorted(st["space"].items()))
        lines.append(
            f"| {i} | {st['num_trials']} | {st['num_epochs']} | {st['config_epochs']} | "
            f"{st['seconds']:.0f} | {best:.4f} | {ranges} |"
        )
    lines += ["", "How stage 0's ranges were set:", ""]
    lines += [f"- `{n}`: {how}" for n, how in sorted(summary["space_notes"].items())]
    lines += [
        f"- stage {i + 1} extended the default range of `{name}` past its {side} border to "
        f"{bound:.3g} (stage {i}'s best trials sat there)"
        for i, st in enumerate(stages)
        for name, (side, bound) in sorted(st.get("extended", {}).items())
    ]
    lines += [
        "",
        (
            f"{summary['config_epochs']} configuration-epochs in all; the whole job took "
            f"{summary['wall_seconds']:.0f} s of wall time (this run; a resumed job counts only "
            "its own part)."
        ),
    ]
    return lines


def _found(summary: dict[str, Any]) -> list[str]:
    best, ens = summary["best"], summary["ensemble"]
    hparams = ", ".join(f"{k}={v:.3g}" for k, v in sorted(best.get("hparams", {}).items()))
    lines = [
        "## What was found",
        "",
        (
            f"Best model (stage {best.get('stage')}, trial {best.get('trial')}): {hparams}: "
            f"train {best['train_accuracy']:.4f}, val {best['val_accuracy']:.4f}, "
            f"test {best['test_accuracy']:.4f}"
            + (
                f"; the running average of its weights (EMA): val {best['ema']['val_accuracy']:.4f}, "
                f"test {best['ema']['test_accuracy']:.4f}."
                if "ema" in best
                else "."
            )
        ),
        "",
        (
            f"Ensemble of {ens['size']} ({ens['combine']}; {ens['members_from']}, final "
            "weights): "
            f"val {ens['val_accuracy']:.4f}, test {ens['test_accuracy']:.4f}, "
            f"{ens['gain_over_best']['test_accuracy']:+.4f} test over its best member."
        ),
        "",
        "| member | epochs | val | test |",
        "|---|---|---|---|",
    ]
    epochs = {o["name"]: o["num_epochs"] for o in ens["origin"]}
    for m in ens["members"]:
        lines.append(
            f"| {m['name']} | {epochs.get(m['name'], '')} | {m['val_accuracy']:.4f} | "
            f"{m['test_accuracy']:.4f} |"
        )
    lines.append(
        f"| **ensemble** | | **{ens['val_accuracy']:.4f}** | **{ens['test_accuracy']:.4f}** |"
    )
    return lines


def render(summary: dict[str, Any], figures: list[str], flags: str = "") -> str:
    """The page, from the summary and the figure files present."""
    lines = ["# Tune report", ""] + _searched(summary) + [""] + _found(summary)
    if flags:
        lines += ["", "Retrain the best model with `python -m experiments.train` and:", ""]
        lines += ["```", flags, "```"]
    lines += ["", "## Figures", ""]
    lines += [f"![{what}]({name})  \n{what}" for name, what in _FIGURES if name in figures]
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in summary["border_warnings"]] or ["None."]
    return "\n".join(lines) + "\n"


def write(workdir: str, summary: dict[str, Any]) -> None:
    """Writes ``workdir/report.md`` atomically."""
    info = os.path.join(workdir, "best_hparams.json")
    flags = metrics.read_json(info).get("flags", "") if os.path.exists(info) else ""
    text = render(summary, sorted(os.listdir(workdir)), flags)
    with metrics.atomic(os.path.join(workdir, "report.md")) as f:
        f.write(text)
