"""Matplotlib figures written into a workdir (PNG, headless)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lib import data  # noqa: E402


def training_curves(history: Sequence[dict], path: str) -> None:
    """Loss (left) and train/val accuracy (right) against the epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.plot(epochs, [r["train_accuracy"] for r in history], marker=".", label="train")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in history], marker=".", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_templates(weights: np.ndarray, dataset: data.Dataset, path: str) -> None:
    """The rows of a linear classifier's W (K, D) shown as images: the notes' class templates.

    Each template is rescaled to [0, 1] on its own so its pattern is visible.
    """
    images = data.to_images(np.asarray(weights), dataset.image_shape)
    k = images.shape[0]
    cols = min(k, 10)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images)):
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        if img.ndim == 1:  # a 2-D data set such as the spiral: show the weight vector
            img = img[None, :]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(str(dataset.class_names[i]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def search_trials(trials: Sequence[Mapping[str, Any]], space: Mapping[str, Any], path: str) -> None:
    """The notes' picture: train and val accuracy of every finished trial over
    (learning rate, reg) on log axes, coloured by accuracy. Without both names in the
    space: val accuracy against each numeric hyperparameter instead. Without any complete
    trial: a figure saying so."""
    ok = [t for t in trials if t["status"] == "complete"]
    numeric = [n for n in sorted(space) if space[n].scale != "choice"]
    if not ok:  # nothing to place on (log) axes: every trial diverged
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no complete trial ({len(trials)} diverged)", ha="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    if (
        "learning_rate" in space
        and "reg" in space
        and "choice" not in (space["learning_rate"].scale, space["reg"].scale)
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        lr = [t["hparams"]["learning_rate"] for t in ok]
        reg = [t["hparams"]["reg"] for t in ok]
        for ax, key in zip(axes, ("train_accuracy", "val_accuracy")):
            sc = ax.scatter(lr, reg, c=[t[key] for t in ok], cmap="viridis", s=30)
            ax.set(
                xscale=space["learning_rate"].scale,
                yscale=space["reg"].scale,
                xlabel="learning rate",
                ylabel="reg",
                title=key.replace("_", " "),
            )
            fig.colorbar(sc, ax=ax)
    else:
        fig, axes = plt.subplots(
            1, max(len(numeric), 1), figsize=(5 * max(len(numeric), 1), 4), squeeze=False
        )
        for ax, name in zip(axes[0], numeric):
            ax.scatter([t["hparams"][name] for t in ok], [t["val_accuracy"] for t in ok], s=20)
            ax.set(xscale=space[name].scale, xlabel=name, ylabel="val accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
