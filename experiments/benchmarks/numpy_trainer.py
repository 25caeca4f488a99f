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


def _softmax(scores, y):
    """Mean cross-entropy of the rows of ``scores`` and its gradient in the scores."""
    num_train = scores.shape[0]
    scores -= scores.max(axis=1, keepdims=True)  # numeric stability (scores is our own)
    exp_scores = np.exp(scores)
    sum_exp = exp_scores.sum(axis=1, keepdims=True)
    rows = np.arange(num_train)
    loss = np.mean(np.log(sum_exp[:, 0]) - scores[rows, y])
    dscores = exp_scores / sum_exp
    dscores[rows, y] -= 1
    dscores /= num_train
    return loss, dscores


def softmax_loss_vectorized(W, b, X, y, reg, layout="DK"):
    """Softmax loss and gradients, no explicit loops (the course's vectorised version).

    Returns:
      (loss, dW, db) with dW shaped like W.
    """
    loss, dscores = _softmax(_scores(W, b, X, layout), y)
    dW = _weight_grad(X, dscores, layout) + 2 * reg * W
    return loss + reg * np.sum(W * W), dW, dscores.sum(axis=0)


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
        value, dW, db = loss_fn(W, b, X[idx], y[idx], reg, model.layout)
        total += float(value)
        _momentum(W, vW, dW, lr, mu)
        _momentum(b, vb, db, lr, mu)
    return total / len(batches)


def _momentum(p: np.ndarray, v: np.ndarray, g: np.ndarray, lr, mu) -> None:
    """``v = mu * v - lr * g; p += v``, in place."""
    v *= mu
    v -= lr * g
    p += v


def accuracy(model: Model, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of ``X`` whose highest score is the label."""
    return float(np.mean(_scores(model.W, model.b, X, model.layout).argmax(axis=1) == y))


# ----------------------------------------------------------------------------- two-layer net


class TwoLayer(NamedTuple):
    """The course's ``TwoLayerNet``: ``W1`` (D, H), ``b1``, ``W2`` (H, K), ``b2`` and their
    momentum velocities (dicts of numpy arrays, updated in place)."""

    params: dict
    velocity: dict


def init_two_layer(params: dict) -> TwoLayer:
    """A net from scorelab's two-layer params (``W1`` (H, D), ``W2`` (K, H)); velocities zero."""
    p = {
        "W1": np.array(np.asarray(params["W1"], np.float32).T, order="C"),
        "b1": np.array(params["b1"], np.float32),
        "W2": np.array(np.asarray(params["W2"], np.float32).T, order="C"),
        "b2": np.array(params["b2"], np.float32),
    }
    return TwoLayer(p, {k: np.zeros_like(v) for k, v in p.items()})


def two_layer_loss(p: dict, X: np.ndarray, y: np.ndarray, reg):
    """``TwoLayerNet.loss``: ReLU hidden layer, softmax, L2 on both weights; (loss, grads)."""
    h = np.maximum(0, X.dot(p["W1"]) + p["b1"])
    loss, dscores = _softmax(h.dot(p["W2"]) + p["b2"], y)
    loss += reg * (np.sum(p["W1"] * p["W1"]) + np.sum(p["W2"] * p["W2"]))
    dh = dscores.dot(p["W2"].T)
    dh[h <= 0] = 0
    grads = {
        "W1": X.T.dot(dh) + 2 * reg * p["W1"],
        "b1": dh.sum(axis=0),
        "W2": h.T.dot(dscores) + 2 * reg * p["W2"],
        "b2": dscores.sum(axis=0),
    }
    return loss, grads


def train_epoch_two_layer(
    net: TwoLayer, X, y, batches: np.ndarray, learning_rate: float, reg: float, mu: float = 0.9
) -> float:
    """One epoch of SGD with momentum for the two-layer net; the mean minibatch loss."""
    lr, reg, mu = np.float32(learning_rate), np.float32(reg), np.float32(mu)
    total = 0.0
    for idx in batches:
        value, grads = two_layer_loss(net.params, X[idx], y[idx], reg)
        total += float(value)
        for k, g in grads.items():
            _momentum(net.params[k], net.velocity[k], g, lr, mu)
    return total / len(batches)
