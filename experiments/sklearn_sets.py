r"""``experiments.tune`` against scikit-learn on scikit-learn's bundled data sets.

  python -m experiments.sklearn_sets --workdir=runs/sklearn_sets [--sets=digits,iris]

Each set (digits, iris, wine, breast_cancer) is saved as a user's ``.npz`` with a fixed
stratified 60/20/20 split (``x_train``/``y_train``, ``x_val``/``y_val``, ``x_test``/``y_test``,
seed 0, raw features); then on the same split:

* scikit-learn's ``LogisticRegression`` and ``MLPClassifier`` with their defaults
  (``max_iter`` raised so that they converge) on standardised features, fitted on the
  training rows;
* ``python -m experiments.tune`` with ``configs/npz_softmax.py`` and
  ``configs/npz_two_layer.py`` as they are (no flag but the data file): the search picks on
  the validation rows, the test rows are scored once.

Prints a markdown table (test accuracy; the tune's best model, its ensemble and its wall
time) and writes it, with every figure, to ``<workdir>/table.json``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags, logging

from configs import npz_softmax, npz_two_layer
from configs import tune as tune_config
from lib import cli, metrics, tune

SETS = ("digits", "iris", "wine", "breast_cancer")
_SETS = flags.DEFINE_list("sets", list(SETS), f"Which of {', '.join(SETS)}.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the files and tunes.", required=True)
_CONFIGS = {"softmax": npz_softmax, "two_layer": npz_two_layer}


def write_npz(name: str, path: str) -> dict[str, np.ndarray]:
    """The set's fixed stratified 60/20/20 split (seed 0), saved to ``path``."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, stratify=y, random_state=0
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    arrays = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    arrays |= {"x_test": x_test, "y_test": y_test}
    np.savez(path, **arrays)
    return arrays


def sklearn_scores(a: dict[str, np.ndarray]) -> dict[str, float]:
    """Test accuracy of LogisticRegression and MLPClassifier (defaults, standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "LogisticRegression": LogisticRegression(max_iter=5000),
        "MLPClassifier": MLPClassifier(max_iter=2000, random_state=0),
    }
    out = {}
    for name, model in models.items():
        fitted = make_pipeline(StandardScaler(), model).fit(a["x_train"], a["y_train"])
        out[name] = float(fitted.score(a["x_test"], a["y_test"]))
    return out


def tune_scores(model: str, path: str, workdir: str) -> dict[str, float]:
    """The tune of ``configs/npz_<model>.py`` on ``path``: test accuracies and wall time."""
    config = tune_config.add_blocks(_CONFIGS[model].get_config())
    config.dataset.data_dir = path
    t0 = time.perf_counter()
    summary = tune.run_tune(config, workdir)
    return {
        "best_test": summary["best"]["test_accuracy"],
        "ensemble_test": summary["ensemble"]["test_accuracy"],
        "config_epochs": summary["config_epochs"],
        "seconds": time.perf_counter() - t0,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_SETS.value) - set(SETS))
    if unknown:
        raise ValueError(f"unknown --sets {unknown}; valid: {', '.join(SETS)}")
    root = _WORKDIR.value
    os.makedirs(root, exist_ok=True)
    table = {}
    for name in _SETS.value:
        path = os.path.join(root, f"{name}.npz")
        row = {"sklearn": sklearn_scores(write_npz(name, path))}
        for model in _CONFIGS:
            logging.info("%s: tune with configs/npz_%s.py", name, model)
            row[model] = tune_scores(model, path, os.path.join(root, f"{name}_{model}"))
        table[name] = row
        metrics.write_json(os.path.join(root, "table.json"), table)
    print(markdown(table))


def markdown(table: dict) -> str:
    lines = [
        (
            "| data set | LogisticRegression | tune npz_softmax (best / ensemble) | MLPClassifier "
            "| tune npz_two_layer (best / ensemble) | tune wall time (softmax, two-layer) |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        s, t, sk = r["softmax"], r["two_layer"], r["sklearn"]
        lines.append(
            f"| {name} | {sk['LogisticRegression']:.4f} | {s['best_test']:.4f} / "
            f"{s['ensemble_test']:.4f} | {sk['MLPClassifier']:.4f} | {t['best_test']:.4f} / "
            f"{t['ensemble_test']:.4f} | {s['seconds']:.0f} s, {t['seconds']:.0f} s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
