"""SIGTERM handling: at once while training, deferred during bookkeeping."""

from __future__ import annotations

import os
import signal

import pytest

from hpo.trial.preemption import Preempted, Preemption


def test_sigterm_while_interruptible_raises_at_once() -> None:
    preemption = Preemption()
    reached_after_signal = False
    with preemption.installed(), pytest.raises(Preempted), preemption.interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        reached_after_signal = True
    assert not reached_after_signal and preemption.requested


def test_sigterm_during_bookkeeping_is_only_noted_and_raised_at_the_next_check() -> None:
    preemption = Preemption()
    with preemption.installed():
        os.kill(os.getpid(), signal.SIGTERM)  # outside `interruptible`: the write goes on
        assert preemption.requested
        with pytest.raises(Preempted):
            preemption.check()
        with pytest.raises(Preempted), preemption.interruptible():  # and before training again
            pass


def test_the_previous_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Preemption().installed():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
