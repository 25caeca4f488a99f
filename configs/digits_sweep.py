r"""Random search, coarse to fine, for the linear softmax classifier on digits (the default).

  python -m experiments.sweep --config=configs/digits_sweep.py --workdir=runs/digits_sweep

Stage 1 draws 64 (learning rate, reg) pairs log-uniformly and trains each 2 epochs; stage 2
trains 16 trials for 10 epochs inside the range of the best quarter; stage 3 trains 4 for 30.
"""

import ml_collections
from ml_collections import config_dict

from configs import digits_softmax


def search_block(**overrides) -> ml_collections.ConfigDict:
    """The ``search`` fields every sweep config has (lib/search.py; the space: lib/space.py)."""
    block = {
        "sampler": "random",  # random | grid | tpe
        "seed": 0,  # the trials' seeds and their shared minibatch order
        "num_trials": 64,  # used when stages is empty (with train.num_epochs)
        "stages": "",  # "64x2,16x10,4x30": trials x epochs per stage
        "top_fraction": 0.25,  # each stage narrows the ranges around this best fraction
        "trials_per_batch": 64,  # trials per vmapped program (padded to the device count)
        # finished trials a TPE model needs: the first stage begins with this many random
        # trials; a later stage models the earlier stage's until it has this many
        "tpe_startup": 10,  # tpe: trials before a stage models its own
        "storage": config_dict.placeholder(str),  # RDB URL; default <workdir>/study.journal
        "heartbeat_interval": 10,  # RDB storage: seconds between heartbeats of running trials
        "grace_period": 60,  # RDB storage: a trial silent this long (s) is run by another worker
        "study_name": "sweep",  # the Optuna study's name (one study per stage)
        "space": {},  # name: {low, high, scale: log | linear} or {choices: [...]}
    }
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def get_config():
    c = digits_softmax.get_config()
    c.search = search_block(
        stages="64x2,16x10,4x30",
        space={
            "learning_rate": {"low": 1e-4, "high": 10.0, "scale": "log"},
            "reg": {"low": 1e-6, "high": 1e-1, "scale": "log"},
        },
    )
    return c
