"""The limits each database session carries (storage.session_limits), the errors that count as
"try again" (a session the server ended, a server with no free slot), and the wait for a slot
when a worker opens its storage."""

from __future__ import annotations

import logging

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import StorageInternalError

from storage import open_storage
from storage.errors import StorageError
from storage.open import _waiting_while_unavailable
from storage.retries import is_transient, reason
from storage.session_limits import session_settings, transaction_settings
from storage.urls import parse_storage_url
from tests.conftest import Database


class _Refusal(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _dbapi_error(cls: type[sqlalchemy.exc.DBAPIError], message: str, sqlstate: str | None = None):
    return cls("connect", {}, _Refusal(message, sqlstate))


def test_each_server_gets_its_own_limits() -> None:
    # PostgreSQL: per transaction, so that nothing leaks through a pooler onto other clients.
    per_transaction = transaction_settings("postgresql", 2.5)
    assert per_transaction is not None
    assert "set_config('idle_in_transaction_session_timeout', '3s', true)" in per_transaction
    assert "set_config('lock_timeout', '6s', true)" in per_transaction  # the holder ends first
    assert transaction_settings("mysql", 60) is None
    postgres = session_settings("postgresql", 2.5, mariadb=False)
    assert all("tcp_keepalives" in statement for statement in postgres)
    (maria,) = session_settings("mysql", 60, mariadb=True)
    assert "idle_transaction_timeout = 60" in maria and "innodb_lock_wait_timeout = 120" in maria
    (mysql,) = session_settings("mysql", 60, mariadb=False)
    assert "wait_timeout = 60" in mysql and "idle_transaction_timeout" not in mysql
    assert session_settings("sqlite", 60, mariadb=False) == []


IDLE_LIMIT_QUERY = {
    "postgres": "SHOW idle_in_transaction_session_timeout",
    "mariadb": "SELECT @@SESSION.idle_transaction_timeout",
}


def test_a_workers_sessions_carry_the_grace_period_as_their_idle_limit(
    server_database: Database,
) -> None:
    url, query = server_database.url, IDLE_LIMIT_QUERY[server_database.kind]
    open_storage(parse_storage_url(url), create=True).engine.dispose()
    storage = open_storage(parse_storage_url(url), heartbeat_interval=1, grace_period=7)
    try:
        with storage.engine.connect() as connection:
            assert str(connection.exec_driver_sql(query).scalar()) in ("7s", "7")
    finally:
        storage.engine.dispose()


def test_an_ended_session_counts_as_transient_and_a_bad_query_does_not() -> None:
    ended = _dbapi_error(sqlalchemy.exc.InternalError, "terminating connection", "25P03")
    assert is_transient(ended)
    assert not is_transient(_dbapi_error(sqlalchemy.exc.ProgrammingError, "syntax error", "42601"))
    assert not is_transient(_dbapi_error(sqlalchemy.exc.IntegrityError, "duplicate key", "23505"))
    assert reason(ended) == "terminating connection"


def _refused(times: int, message: str, sqlstate: str | None = None):
    """A connect call that the server turns away `times` times, then one that succeeds."""
    attempts = []

    def connect() -> str:
        attempts.append(1)
        if len(attempts) <= times:
            raise _dbapi_error(sqlalchemy.exc.OperationalError, message, sqlstate)
        return "connected"

    return connect


def test_opening_waits_while_the_server_is_full_and_says_so(monkeypatch, caplog) -> None:
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    url = parse_storage_url("postgresql+psycopg://hpo:s3cret@db.example/hpo")
    connect = _refused(
        2,
        'connection failed: connection to server at "db.example" failed: FATAL:  '
        "sorry, too many clients already",
    )
    with caplog.at_level(logging.WARNING, logger="hpo.storage"):
        assert _waiting_while_unavailable(connect, url, wait_s=60) == "connected"
    lines = [record.getMessage() for record in caplog.records]
    # Said once for the two refusals of the same reason, with how long it will wait.
    assert len(lines) == 1 and "too many clients already" in lines[0], lines
    assert "waiting up to 60 s" in lines[0] and "s3cret" not in lines[0]


@pytest.mark.parametrize(
    "refusal",
    [
        ("FATAL: sorry, too many clients already", None),
        ("too many connections", "53300"),
        ("the database system is starting up", "57P03"),
        ("no more connections allowed (max_client_conn)", "08P01"),
        # Ended by the server while the worker set up (a restart, pg_terminate_backend).
        ("terminating connection due to administrator command", "57P01"),
    ],
)
def test_each_kind_of_full_server_is_waited_for(refusal, monkeypatch) -> None:
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    url = parse_storage_url("postgresql+psycopg://hpo@db/hpo")
    assert _waiting_while_unavailable(_refused(1, *refusal), url, wait_s=60) == "connected"


def test_a_connection_ended_during_set_up_is_waited_for_through_optunas_wrapper(
    monkeypatch,
) -> None:
    """Optuna's set-up sessions wrap the driver's error in StorageInternalError."""
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    ended = _refused(1, "terminating connection due to administrator command", "57P01")

    def connect() -> str:
        try:
            return ended()
        except sqlalchemy.exc.OperationalError as error:
            raise optuna.exceptions.StorageInternalError("wrapped") from error

    url = parse_storage_url("postgresql+psycopg://hpo@db/hpo")
    assert _waiting_while_unavailable(connect, url, wait_s=60) == "connected"


def test_a_refused_connection_is_waited_for_up_to_the_outage_then_one_line(monkeypatch) -> None:
    """A server that is down (nothing listens) may be starting: a worker waits, with doubling
    delays, for as long as its outage allows (tests/storage/test_opening.py: a wrong password or
    database fails at once)."""
    slept: list[float] = []
    monkeypatch.setattr("storage.retries.time.sleep", slept.append)
    monkeypatch.setattr("storage.retries.time.monotonic", lambda: sum(slept))
    with pytest.raises(StorageError, match=r"cannot use database .*Connection refused"):
        open_storage(parse_storage_url("postgresql+psycopg://hpo@127.0.0.1:1/hpo"), outage_s=10)
    assert slept == [1.0, 2.0, 4.0]  # the next, 8 s, would pass the outage


def test_a_session_left_broken_by_a_lost_connection_is_retried() -> None:
    """What Optuna raises on the statement after a connection broke mid-transaction: its
    wrapper, from SQLAlchemy's PendingRollbackError, raised while handling the connection error
    (seen on MariaDB when the server ended a session that idled past the grace period)."""
    lost = _dbapi_error(sqlalchemy.exc.OperationalError, "server has gone away", None)
    try:
        try:
            raise lost
        except sqlalchemy.exc.OperationalError:
            raise sqlalchemy.exc.PendingRollbackError("Can't reconnect until rolled back")  # noqa: B904
    except sqlalchemy.exc.PendingRollbackError as pending:
        wrapped = StorageInternalError("An exception is raised during the commit.")
        wrapped.__cause__ = pending
    assert is_transient(wrapped)
    data = StorageInternalError("An exception is raised during the commit.")
    data.__cause__ = _dbapi_error(sqlalchemy.exc.DataError, "value too long", "22001")
    assert not is_transient(data)
