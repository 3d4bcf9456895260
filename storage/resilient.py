"""An RDB storage that waits out a database outage instead of failing the worker.

A restarted or unreachable server makes every storage call raise; the heartbeat thread dies on
the first such error and a trial's report fails. Here each call is retried with back-off for up to
`outage_s` seconds; `pool_pre_ping` (storage.urls) replaces the dead connections. A retried write
whose first attempt did commit is harmless for every call the worker makes (upserts), except a
state change, which is accepted when the trial already holds the state it was being given.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from storage.optuna_internals import PRIVATE_STORAGE_READS

_log = logging.getLogger("hpo.storage")
T = TypeVar("T")

# Methods a worker calls; creation-time writes (enqueueing a study's grid) are not retried, so a
# lost acknowledgement can never enqueue a point twice.
_RETRIED = (
    *PRIVATE_STORAGE_READS,  # what Optuna's own code reads through
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
_TRANSIENT = (StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
# PostgreSQL's "terminating connection due to idle-in-transaction timeout" (storage.session_limits)
# is an InternalError by its SQL state; the next attempt runs on a new connection.
_ENDED_SESSION_STATES = {"25P03"}


def is_transient(error: BaseException) -> bool:
    """Whether `error` may pass: the database was unreachable, restarting, full, or ended our
    session; not a constraint violation or a bad query."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if getattr(error.orig, "sqlstate", None) in _ENDED_SESSION_STATES:
            return True
    return isinstance(error, _TRANSIENT)


def reason(error: BaseException) -> str:
    """The database's own words, first line only: "too many clients already", not a traceback."""
    while isinstance(error, StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    return detail[0] if detail else type(error).__name__


class ResilientRDBStorage(RDBStorage):
    outage_s: float = 300.0

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        first = True

        def attempt() -> bool:
            nonlocal first
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                # After a failed attempt, "already finished" may be our own earlier commit.
                if not first and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise
            finally:
                first = False

        return with_retries(attempt, self.outage_s, "set_trial_state_values")


def with_retries(
    call: Callable[[], T],
    outage_s: float,
    name: str,
    *,
    retry_if: Callable[[Exception], bool] = is_transient,
    first_delay_s: float = 0.5,
    explain: Callable[[Exception, float], str] | None = None,
) -> T:
    """`call()`, tried again with doubling delays (at most 15 s) for up to `outage_s` seconds
    while it raises errors that `retry_if` accepts; each retry says why on the `hpo.storage`
    logger (stderr): `explain(error, delay)`, by default "database unavailable during NAME"."""
    deadline = time.monotonic() + outage_s
    delay = first_delay_s
    while True:
        try:
            return call()
        except Exception as error:
            if not retry_if(error) or time.monotonic() + delay > deadline:
                raise
            _log.warning("%s", (explain or _unavailable(name))(error, delay))
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def _unavailable(name: str) -> Callable[[Exception, float], str]:
    def explain(error: Exception, delay: float) -> str:
        return f"database unavailable during {name} ({reason(error)}); retrying in {delay:.1f} s"

    return explain


def _retrying(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return with_retries(lambda: method(self, *args, **kwargs), self.outage_s, name)

    return wrapper


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(_name))
