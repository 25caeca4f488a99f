"""The baseline: a plain-numpy linear classifier trainer in the course's vectorised style.

This is what ``experiments.bench`` races scorelab against. It is written the way the course's
``softmax_loss_vectorized`` / ``svm_loss_vectorized`` and ``LinearClassifier.train`` are
written -- whole-batch numpy expressions, one Python loop over minibatches -- with two
choices that keep it comparable with scorelab and never slow it down:

* the weights are stored either as the course's ``W`` of shape (D, K) (``scores = X W``) or
  as the notes' (K, D) (``scores = X W^T``); ``layout`` picks one, and the benchmark times
  both and keeps the faster one as the baseline;
* the bias is its own vector ``b`` (instead of the course's column of ones appended to X),
  so the model, the L2 penalty (weights only) and the update are exactly scorelab's:

      L = mean_i L_i + reg * sum(W**2),   v = mu * v - lr * dW,   W += v.

The minibatches are given as an index array (steps, batch) so that the benchmark can feed
both trainers the same permutation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

LAYOUTS = ("DK", "KD")
LOSSES = ("softmax", "hinge")


class Model(NamedTuple):
    """Weights, bias and their momentum velocities (numpy arrays, updated in place)."""

    W: np.ndarray
    b: np.ndarray
    vW: np.ndarray
    vb: np.ndarray
    layout: str


def init(W_kd: np.ndarray, b: np.ndarray, layout: str = "DK") -> Model:
    """A model from scorelab-style weights ``W_kd`` (K, D) and ``b`` (K,); velocities zero."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    W_kd = np.asarray(W_kd, np.float32)
    W = np.array(W_kd.T if layout == "DK" else W_kd, order="C", copy=True)  # our own, writable
    b = np.array(b, np.float32)
    return Model(W, b, np.zeros_like(W), np.zeros_like(b), layout)


def weights_kd(model: Model) -> np.ndarray:
    """The weights in scorelab's (K, D) layout."""
    return model.W.T if model.layout == "DK" else model.W


def _scores(W, b, X, layout):
    return (X.dot(W) if layout == "DK" else X.dot(W.T)) + b


def _weight_grad(X, dscores, layout):
    # (D, K): dW = X^T dS;  (K, D): dW = dS^T X.
    return X.T.dot(dscores) if layout == "DK" else dscores.T.dot(X)


def softmax_loss_vectorized(W, b, X, y, reg, layout="DK"):
    """Softmax loss and gradients, no explicit loops (the course's vectorised version).

    Returns:
      (loss, dW, db) with dW shaped like W.
    """
    num_train = X.shape[0]
    scores = _scores(W, b, X, layout)
    scores -= scores.max(axis=1, keepdims=True)  # numeric stability
    exp_scores = np.exp(scores)
    sum_exp = exp_scores.sum(axis=1, keepdims=True)
    rows = np.arange(num_train)
    loss = np.mean(np.log(sum_exp[:, 0]) - scores[rows, y]) + reg * np.sum(W * W)
    dscores = exp_scores / sum_exp
    dscores[rows, y] -= 1
    dscores /= num_train
    dW = _weight_grad(X, dscores, layout) + 2 * reg * W
    db = dscores.sum(axis=0)
    return loss, dW, db


def svm_loss_vectorized(W, b, X, y, reg, layout="DK", margin=1.0):
    """Multiclass (Weston-Watkins) SVM loss and gradients, vectorised.

    Returns:
      (loss, dW, db) with dW shaped like W.
    """
    num_train = X.shape[0]
    scores = _scores(W, b, X, layout)
    rows = np.arange(num_train)
    correct = scores[rows, y][:, None]
    margins = np.maximum(0, scores - correct + margin)
    margins[rows, y] = 0
    loss = margins.sum() / num_train + reg * np.sum(W * W)
    dscores = (margins > 0).astype(X.dtype)
    dscores[rows, y] = -dscores.sum(axis=1)
    dscores /= num_train
    dW = _weight_grad(X, dscores, layout) + 2 * reg * W
    db = dscores.sum(axis=0)
    return loss, dW, db


LOSS_FNS = {"softmax": softmax_loss_vectorized, "hinge": svm_loss_vectorized}


def train_epoch(
    model: Model,
    X: np.ndarray,
    y: np.ndarray,
    batches: np.ndarray,
    learning_rate: float,
    reg: float,
    mu: float = 0.9,
    loss: str = "softmax",
) -> float:
    """One epoch of SGD with momentum over the minibatches ``batches`` (steps, B) of indices.

    Updates ``model`` in place; returns the mean minibatch loss (as scorelab reports it).
    """
    if loss not in LOSS_FNS:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    loss_fn = LOSS_FNS[loss]
    W, b, vW, vb = model.W, model.b, model.vW, model.vb
    lr, reg, mu = np.float32(learning_rate), np.float32(reg), np.float32(mu)
    total = 0.0
    for idx in batches:
        X_batch, y_batch = X[idx], y[idx]
        value, dW, db = loss_fn(W, b, X_batch, y_batch, reg, model.layout)
        total += float(value)
        vW *= mu
        vW -= lr * dW
        W += vW
        vb *= mu
        vb -= lr * db
        b += vb
    return total / len(batches)


def accuracy(model: Model, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of ``X`` whose highest score is the label."""
    return float(np.mean(_scores(model.W, model.b, X, model.layout).argmax(axis=1) == y))
