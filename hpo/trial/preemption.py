"""SIGTERM handling: stop training at once, but never in the middle of a database or file write.

Preemptible GPU nodes and `docker stop` send SIGTERM and wait a few seconds before SIGKILL. While
a trial trains ("interruptible"), the signal raises `Preempted` right away: the epoch in progress
is dropped and the last checkpoint stands. During bookkeeping it is only noted, and raised as soon
as the bookkeeping is done.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Preempted(Exception):
    """The worker was asked to stop (SIGTERM)."""


def stop_signal(stop: BaseException) -> str:
    """How the user stopped the worker, as its lines and a handed-back trial name it."""
    return "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else "SIGTERM"


class Preemption:
    def __init__(self) -> None:
        self.requested = False
        self._armed = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM while the block runs (from the main thread only, as Python requires)."""
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self._armed:
            self._armed = False
            raise Preempted()

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def check(self) -> None:
        if self.requested:
            raise Preempted()
