"""The project's RDB storage: it waits out a database outage instead of failing the worker, and
says `TakenOver` when a write finds the trial finished by another worker.

A restarted or unreachable server makes every storage call raise; the heartbeat thread dies on
the first such error and a trial's report fails. Here each call is retried with back-off for up to
`outage_s` seconds (a constructor argument; 0 for the commands that are not workers);
`pool_pre_ping` (storage.urls) replaces the dead connections. A retried write whose first attempt
did commit is harmless for every call the worker makes (upserts), except a state change, which is
accepted when the trial already holds the state it was being given. Taking a queued trial is the
work queue's (hpo.workqueue.pop), which marks the trial with `taker` so that a retried pop
recognizes its own earlier commit; a RUNNING state set through Optuna's own API keeps Optuna's
contract (False for a trial that is not WAITING, UpdateFinishedTrialError for a finished one).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage
from optuna.trial import TrialState

from storage.errors import TakenOver, taken_over_if_finished
from storage.retries import with_retries
from storage.urls import DEFAULT_NETWORK_TIMEOUT_S, StorageURL

# Methods a worker calls; creation-time writes (enqueueing a study's grid) are not retried, so a
# lost acknowledgement can never enqueue a point twice.
# (Optuna's private reads, which its trial cache calls, are retried by the work queue's cache.)
_RETRIED = (
    "get_study_id_from_name",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_study_directions",
    "get_all_studies",
    "get_study_name_from_id",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_trial_id_from_study_id_trial_number",
    "get_best_trial",
    "set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "record_heartbeat",
)
# Writes to a running trial: refused once another worker has finished it.
_TRIAL_WRITES = (
    "set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
)


T = TypeVar("T")


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls wait out an outage of up to `outage_s` seconds (0: a
    call fails at once); `retried` does the same for the project's own queries."""

    def __init__(
        self,
        url: StorageURL,
        *,
        outage_s: float,
        network_timeout_s: float = DEFAULT_NETWORK_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        self.outage_s = outage_s
        self._retrying = threading.local()  # per thread: inside a retried call
        super().__init__(
            url.secret(),
            engine_kwargs=url.engine_kwargs(network_timeout_s),
            **kwargs,
        )
        # Who this process is, in the trials it takes (TAKEN_BY_ATTR): the host and process that
        # ran a trial, and how a retried pop knows its own earlier commit.
        self.taker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def __getstate__(self) -> dict[Any, Any]:
        # Picklable as Optuna's storage is (its contract): the per-thread flag is made anew.
        state = super().__getstate__()
        del state["_retrying"]
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._retrying = threading.local()

    def retried(self, call: Callable[[], T], name: str) -> T:
        """`call()`, tried again through an outage of up to `outage_s` seconds. Inside a call
        that is retried already, the storage calls it makes are tried once: the outermost retry
        owns the wait, so an outage is never waited out twice over."""
        if getattr(self._retrying, "active", False):
            return call()
        self._retrying.active = True
        try:
            return with_retries(call, self.outage_s, name)
        finally:
            self._retrying.active = False

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        first = True

        def attempt() -> bool:
            nonlocal first
            try:
                with taken_over_if_finished(trial_id):
                    return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except TakenOver:
                # After a failed attempt, "already finished" may be our own earlier commit.
                if (
                    not first
                    and state.is_finished()
                    and RDBStorage.get_trial(self, trial_id).state == state
                ):
                    return True
                raise
            finally:
                first = False

        return self.retried(attempt, "set_trial_state_values")


def _retrying(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)
    writes_trial = name in _TRIAL_WRITES

    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            if not writes_trial:
                return method(self, *args, **kwargs)
            with taken_over_if_finished(args[0] if args else kwargs["trial_id"]):
                return method(self, *args, **kwargs)

        return self.retried(call, name)

    return wrapper


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(_name))
