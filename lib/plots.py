"""Matplotlib figures written into a workdir (PNG, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lib import data


def training_curves(history: Sequence[dict], path: str) -> None:
    """Loss (left: the minibatches' mean, and the validation set's data loss) and train/val
    accuracy (right) against the epoch: the gap between the curves is the overfitting."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker=".", label="train")
    if all("val_loss" in r for r in history):
        ax_loss.plot(epochs, [r["val_loss"] for r in history], marker=".", label="val (data loss)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_accuracy"] for r in history], marker=".", label="train")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in history], marker=".", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _image_grid(images: np.ndarray, titles: Sequence[str] | None, cols: int, path: str) -> None:
    """Images in a grid, each rescaled to [0, 1] on its own so its pattern is visible."""
    n = images.shape[0]
    cols = min(n, cols)
    rows = -(-n // cols)
    size = 1.6 if titles else 0.8
    fig, axes = plt.subplots(
        rows, cols, figsize=(size * cols, (size + 0.2 * bool(titles)) * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images)):
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        if img.ndim == 1:  # a 2-D data set such as the spiral: show the weight vector
            img = img[None, :]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        if titles:
            ax.set_title(str(titles[i]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_templates(weights: np.ndarray, dataset: data.Dataset, path: str) -> None:
    """The rows of a linear classifier's W (K, D) shown as images: the notes' class templates."""
    images = data.to_images(np.asarray(weights), dataset.image_shape)
    _image_grid(images, dataset.class_names, 10, path)


def first_layer(weights: np.ndarray, dataset: data.Dataset, path: str, most: int = 200) -> None:
    """The rows of a two-layer net's W1 (H, D) as images (the first ``most`` units): the
    notes' picture of what the hidden units look for."""
    images = data.to_images(np.asarray(weights)[:most], dataset.image_shape)
    _image_grid(images, None, 20, path)


_STAGE_MARKERS = "o^sDvP*X"


def search_trials(
    trials: Sequence[Mapping[str, Any]],
    space: Mapping[str, Any],
    path: str,
    best: Mapping[str, Any] | None = None,
) -> None:
    """The notes' picture: train and val accuracy of every finished trial over
    (learning rate, reg) on log axes, coloured by accuracy, one marker shape per stage,
    the ``best`` trial circled in red. Without both names in the space: val accuracy
    against each numeric hyperparameter instead. Without any complete trial: a figure
    saying so."""
    ok = [t for t in trials if t["status"] == "complete"]
    if not ok:  # nothing to place on (log) axes: every trial diverged
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no complete trial ({len(trials)} diverged)", ha="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    stages = sorted({t.get("stage", 0) for t in ok})
    markers = {s: _STAGE_MARKERS[i % len(_STAGE_MARKERS)] for i, s in enumerate(stages)}
    fig, panels = _search_panels(space)
    for ax, x_name, y_name, key in panels:
        _search_panel(fig, ax, ok, space, x_name, y_name, key, markers, best)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _search_panels(space: Mapping[str, Any]):
    """The figure and its panels (ax, x name, y name, coloured key): train and val accuracy
    over (learning_rate, reg) when both are numeric dimensions of ``space``, else one panel
    per numeric dimension (x) with the val accuracy as y (y name None, no colours)."""
    if (
        "learning_rate" in space
        and "reg" in space
        and "choice" not in (space["learning_rate"].scale, space["reg"].scale)
    ):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), squeeze=False)
        keys = ("train_accuracy", "val_accuracy")
        return fig, [(ax, "learning_rate", "reg", key) for ax, key in zip(axes[0], keys)]
    numeric = [n for n in sorted(space) if space[n].scale != "choice"]
    width = max(len(numeric), 1)
    fig, axes = plt.subplots(1, width, figsize=(5 * width, 4), squeeze=False)
    return fig, [(ax, name, None, "val_accuracy") for ax, name in zip(axes[0], numeric)]


def _search_panel(fig, ax, ok, space, x_name, y_name, key, markers, best) -> None:
    """One panel: each stage's complete trials ``ok`` at (x, y), coloured by ``key`` when y
    is a hyperparameter, or at (x, val accuracy); the ``best`` trial circled in red."""
    values = [t[key] for t in ok]
    for s, marker in markers.items():
        rows = [t for t in ok if t.get("stage", 0) == s]
        xs = [t["hparams"][x_name] for t in rows]
        ys = [t["hparams"][y_name] if y_name else t["val_accuracy"] for t in rows]
        colour = {"c": [t[key] for t in rows], "vmin": min(values), "vmax": max(values)}
        sc = ax.scatter(
            xs, ys, marker=marker, s=30, label=f"stage {s}", **(colour if y_name else {})
        )
    if y_name:
        fig.colorbar(sc, ax=ax)
    if best is not None:
        by = best["hparams"][y_name] if y_name else best["val_accuracy"]
        ax.scatter(
            [best["hparams"][x_name]],
            [by],
            s=220,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label="best",
        )
    ax.set(
        xscale=space[x_name].scale,
        xlabel=x_name.replace("_", " "),
        ylabel=y_name.replace("_", " ") if y_name else "val accuracy",
        title=key.replace("_", " ") if y_name else "",
    )
    if y_name:
        ax.set_yscale(space[y_name].scale)
    ax.legend(fontsize=7)


def ensemble_members(result: dict, path: str) -> None:
    """Member accuracies (points) against the ensemble's and the mean member's (lines)."""
    rows = result["members"]
    idx = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(rows) + 3), 4))
    for split, color in (("val", "C0"), ("test", "C1")):
        key = f"{split}_accuracy"
        ax.plot(idx, [m[key] for m in rows], "o", color=color, label=f"member {split}")
        ax.axhline(result["ensemble"][key], color=color, label=f"ensemble {split}")
        ax.axhline(
            result["mean_member"][key], color=color, ls="--", lw=0.8, label=f"mean member {split}"
        )
    ax.set_xticks(idx, [m["name"] for m in rows], rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="accuracy", title=f"{len(rows)} members vs ensemble ({result['combine']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
