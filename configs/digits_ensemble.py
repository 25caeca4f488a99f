r"""Ensemble of 8 two-layer ReLU nets on the 8x8 digits, from 8 seeds (the default job).

  python -m experiments.ensemble --config=configs/digits_ensemble.py --workdir=runs/ens

Other sources of members (see lib/members.py):

  --config.ensemble.source=search --config.ensemble.search_dir=runs/sweep    # top sweep trials
  --config.ensemble.source=checkpoints --config.ensemble.train_dir=runs/digits  # last epochs
  --config.ensemble.source=ema --config.train.ema_decay=0.99              # weight average

Takes a few seconds on 2 CPU cores.
"""

import ml_collections

from configs import digits_softmax


def ensemble_block(source: str = "seeds", size: int = 8) -> ml_collections.ConfigDict:
    """The ``ensemble`` fields every ensemble config has."""
    return ml_collections.ConfigDict(
        {
            "source": source,  # seeds | search | checkpoints | ema
            "size": size,  # number of members
            "search_dir": "",  # source search: the workdir of experiments.sweep (its trials.csv)
            "own_order": False,  # source search: each trial its own minibatch order (err apart)
            "search_stages": "last",  # source search: last (the last stage's trials) | all
            "train_dir": "",  # source checkpoints: the workdir of experiments.train
            "combine": "proba",  # proba (mean softmax) | scores (mean scores) | vote (majority)
        }
    )


def get_config():
    c = digits_softmax.get_config()
    # Seeds of a convex model (linear softmax) converge to nearly the same classifier;
    # two-layer nets from different initialisations err on different digits.
    c.model.name = "two_layer"
    c.model.hidden = 64
    c.loss.reg = 1e-4
    c.optimizer.learning_rate = 0.02
    c.train.num_epochs = 20
    c.ensemble = ensemble_block("seeds", 8)
    return c
