"""scorelab: the classic image-classification pipeline as small pure JAX functions.

Import the modules you need: ``from lib import scores, losses, backprop, gradcheck,
updates, data, train, search, ensemble``.
"""
