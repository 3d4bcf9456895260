"""Retrying a database call through an outage: which errors may pass, and the back-off loop.

Used by the storage that wraps Optuna's calls (storage.resilient) and, through its `retried`, by
the work queue's own queries, so that both wait out a restarted or unreachable server the same
way and say why on the `hpo.storage` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy
from optuna.exceptions import StorageInternalError

_log = logging.getLogger("hpo.storage")
T = TypeVar("T")

DEFAULT_OUTAGE_S = 600.0  # how long a worker waits for an unavailable database (`--outage`)

# The DB-API's classes for "the database, or the way to it, is not available now" (PEP 249:
# OperationalError, "not necessarily under the control of the programmer"; InterfaceError, the
# driver's connection broke), as SQLAlchemy wraps them.
_TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
# PostgreSQL's "terminating connection due to idle-in-transaction timeout" (storage.session_limits)
# is an InternalError by its SQL state; the next attempt runs on a new connection.
_ENDED_SESSION_STATES = {"25P03"}


def is_transient(error: BaseException) -> bool:
    """Whether `error` may pass: the database was unreachable, restarting, full, or ended our
    session; not invalid data, a constraint violation or a bad query, which fail at once.
    Judged by the driver's error underneath: Optuna wraps every database error of its sessions
    in `StorageInternalError`, a too-long value (DataError) as much as a lost connection, and a
    session whose connection broke mid-transaction answers the next statement with SQLAlchemy's
    PendingRollbackError, whose context is the connection error (the next attempt runs in a
    new session)."""
    for cause in _chain(error):
        if isinstance(cause, sqlalchemy.exc.DBAPIError):
            if cause.connection_invalidated:
                return True
            if getattr(cause.orig, "sqlstate", None) in _ENDED_SESSION_STATES:
                return True
            return isinstance(cause, _TRANSIENT)
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from or while handling, nearest first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _underlying(error: BaseException) -> BaseException:
    while isinstance(error, StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    return error


def reason(error: BaseException) -> str:
    """The database's own words, first line only: "too many clients already", not a traceback."""
    error = _underlying(error)
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    return detail[0] if detail else type(error).__name__


def with_retries(
    call: Callable[[], T],
    outage_s: float,
    name: str,
    *,
    retry_if: Callable[[Exception], bool] = is_transient,
    first_delay_s: float = 0.5,
    explain: Callable[[Exception, float], str | None] | None = None,
) -> T:
    """`call()`, tried again with doubling delays (at most 15 s) for up to `outage_s` seconds
    while it raises errors that `retry_if` accepts; each retry says why on the `hpo.storage`
    logger (stderr): `explain(error, delay)` (None: nothing new to say), by default "database
    unavailable during NAME"."""
    deadline = time.monotonic() + outage_s
    delay = first_delay_s
    while True:
        try:
            return call()
        except Exception as error:
            if not retry_if(error) or time.monotonic() + delay > deadline:
                raise
            said = (explain or _unavailable(name))(error, delay)
            if said is not None:  # None: said already
                _log.warning("%s", said)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def _unavailable(name: str) -> Callable[[Exception, float], str]:
    def explain(error: Exception, delay: float) -> str:
        return f"database unavailable during {name} ({reason(error)}); retrying in {delay:.1f} s"

    return explain
