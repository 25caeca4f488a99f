"""Stopping a run at a safe point on SIGINT (Ctrl-C) or SIGTERM (what schedulers send).

Inside ``deferred()`` the first signal only records itself; the run goes on to its next safe
point (after an epoch's checkpoint, after a batch of trials is stored, ...), where
``check()`` raises :class:`Interrupted`. So no signal lands inside XLA's compiler, an orbax
save or an Optuna write: what is finished is kept, nothing is left half-written, and the same
command resumes. A second signal stops the process at once (what a safe point would have
finished is then redone on resume). ``lib.cli.run``, the experiments' entry, defers the
signals and exits with the shell's status for the signal (130 for SIGINT, 143 for SIGTERM)
and one line on how to resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


class Interrupted(Exception):
    """Raised by ``check()`` at a safe point after a signal arrived."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        """The shell's status for a process ended by the signal: 128 + its number."""
        return 128 + self.signum


def check() -> None:
    """A safe point: raises :class:`Interrupted` if a signal arrived (else does nothing)."""
    if _received:
        raise Interrupted(_received[0])


def received() -> int | None:
    """The first signal recorded since ``deferred()`` began (its number), or None."""
    return _received[0] if _received else None


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if _received:  # the second signal: stop now
        os.write(2, f"\n{name} again: stopped at once; rerun the same command to resume\n".encode())
        os._exit(128 + _received[0])
    _received.append(signum)
    # os.write, not logging: a handler may run while the interrupted code holds a lock.
    os.write(
        2, f"\n{name}: stopping at the next safe point (send it again to stop at once)\n".encode()
    )


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: SIGINT and SIGTERM are recorded for ``check()`` instead of stopping the run."""
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _received.clear()
