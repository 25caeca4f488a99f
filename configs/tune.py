r"""What ``experiments.tune`` adds to a training config: a ``search`` and an ``ensemble`` block.

  python -m experiments.tune --config=configs/digits_softmax.py --workdir=runs/tune

Any training config takes them (``cli.define_config``'s ``extend``): the search block is empty
where the defaults are derived from the data (``search.space`` and ``search.stages``: see
lib/autospace.py), and a config that has its own blocks (a sweep config) keeps them. This
file's ``get_config`` is the default: the digits softmax classifier.
"""

from configs import digits_softmax
from configs.digits_ensemble import ensemble_block
from configs.digits_sweep import search_block


def add_blocks(c):
    """``c`` with the tune's blocks where it has none (in place; returns ``c``)."""
    if "search" not in c:
        # space {} and stages "": derived from the data and the run (lib/autospace.py)
        c.search = search_block(sampler="tpe", trials_per_batch=16, tpe_startup=16)
    if "ensemble" not in c:
        c.ensemble = ensemble_block("search", 8)
    return c


def get_config():
    return add_blocks(digits_softmax.get_config())
