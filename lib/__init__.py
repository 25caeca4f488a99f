"""scorelab: the classic image-classification pipeline as small pure JAX functions.

Import the modules you need, e.g. ``from lib import scores, losses, backprop, gradcheck,
updates, data, train, search, ensemble``. docs/architecture.md lists every module, what it
owns and what it may import, and where to add a model, a loss, an update rule, a schedule,
a sampler or a data set (one registry entry each: ``scores.MODELS``, ``losses.LOSSES``,
``updates.OPTIMIZERS``, ``schedules.SCHEDULES``, ``samplers.SAMPLERS``,
``data_formats.READERS``).
"""
