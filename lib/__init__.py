"""scorelab: the classic image-classification pipeline as small pure JAX functions.

Import the modules you need, e.g. ``from lib import scores, losses, backprop, gradcheck,
updates, data, train, search, ensemble``. The others: ``settings`` (a run's Setup and
hparams, their checks; config -> Setup, hparams, data), ``space``, ``study``,
``sweep_report`` and ``sharding`` (search spaces; the Optuna study; a sweep's files and
warnings; trial batches over devices), ``members`` (ensemble members), ``checkpoints``,
``metrics`` and ``plots`` (workdir files), ``interrupt`` (SIGINT/SIGTERM at safe points) and
``cli`` (the experiments' command line).
"""
