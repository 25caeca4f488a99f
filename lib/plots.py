"""Matplotlib figures written into a workdir (PNG, headless)."""

from __future__ import annotations

from typing import Sequence

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
