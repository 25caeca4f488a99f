"""Type aliases shared by every module."""

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array  # a typed key from ``jax.random.key(seed)``
Params = Any  # a pytree of arrays, e.g. {"W": (K, D), "b": (K,)}
Scalar = float | int | jax.Array
Schedule = Callable[[Array], Array]  # step (int) -> learning rate
ScalarOrSchedule = Scalar | Schedule
