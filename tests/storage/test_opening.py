"""Opening a database that is not there yet: a worker waits it out, within its outage, when the
server is down, starting, stopping or full, says so once, and starts as soon as it answers; what
can never work (a wrong password, a missing database, an unknown driver) fails at once, and so
does every command that is not a worker."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from storage import StorageError, open_storage, parse_storage_url
from storage.open import _unavailable_for_now
from tests.harness.relay import Relay


def _connect_error(message: str, sqlstate: str | None = None) -> sqlalchemy.exc.OperationalError:
    class DriverError(Exception):
        pass

    orig = DriverError(message)
    orig.sqlstate = sqlstate  # type: ignore[attr-defined]
    return sqlalchemy.exc.OperationalError("connect", {}, orig)


@pytest.mark.parametrize(
    "message",
    [
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        "connection failed: FATAL:  the database system is starting up",
        "connection failed: FATAL:  the database system is shutting down",
        "connection failed: FATAL:  sorry, too many clients already",
        'could not translate host name "db-host" to address: Temporary failure in name resolution',
        "server closed the connection unexpectedly",
    ],
)
def test_a_database_that_is_not_there_yet_is_waited_for(message: str) -> None:
    assert _unavailable_for_now(_connect_error(message))


@pytest.mark.parametrize(
    "message",
    [
        'FATAL:  password authentication failed for user "hpo"',
        'FATAL:  database "hpo" does not exist',
        'FATAL:  role "nobody" does not exist',
        "syntax error at or near",
    ],
)
def test_what_can_never_work_is_not_waited_for(message: str) -> None:
    assert not _unavailable_for_now(_connect_error(message))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_worker_s_opening_waits_for_the_server_to_come_up_and_says_so_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    open_storage(parse_storage_url(postgres_url), create=True)  # the study's tables
    port = _free_port()
    later = make_url(postgres_url).set(port=port).render_as_string(hide_password=False)
    opened: list[object] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(open_storage(parse_storage_url(later), outage_s=60))
        except BaseException as error:  # reported by the assertions below
            errors.append(error)

    with caplog.at_level(logging.WARNING, logger="hpo.storage"):
        opener = threading.Thread(target=open_it)
        opener.start()
        deadline = time.monotonic() + 30
        while "is not available" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)  # nothing listens yet: the opening waits
        assert not opened and not errors
        relay = Relay("127.0.0.1", make_url(postgres_url).port or 5432, port=port)
        try:
            opener.join(timeout=60)
        finally:
            relay.close()
    assert not errors and len(opened) == 1
    said = [r.getMessage() for r in caplog.records if "is not available" in r.getMessage()]
    assert len(said) == 1, said
    assert "Connection refused" in said[0] and "waiting up to 60 s" in said[0]


def test_a_command_that_is_not_a_worker_fails_at_once() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/hpo"
    with pytest.raises(StorageError, match="Connection refused"):
        open_storage(parse_storage_url(url))


def test_a_missing_database_fails_at_once_even_for_a_worker(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    missing = make_url(postgres_url).set(database="hpo_no_such_database")
    url = missing.render_as_string(hide_password=False)
    with (
        caplog.at_level(logging.WARNING, logger="hpo.storage"),
        pytest.raises(StorageError, match="does not exist"),
    ):
        open_storage(parse_storage_url(url), outage_s=600)
    assert "not available" not in caplog.text  # not one retry


@pytest.mark.server
def test_a_database_without_an_encoding_opens(postgres_url: str) -> None:
    """A database made with SQL_ASCII (what `initdb` without a locale makes, as in a bare
    container) opened with psycopg: its text came back as bytes and the first query failed with
    a TypeError, a traceback from `hpo create`."""
    import optuna
    import psycopg

    from tests.conftest import PG_ADMIN

    name = make_url(postgres_url).database + "_ascii"
    with psycopg.connect(**PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' TEMPLATE template0"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        try:
            url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
            storage = open_storage(parse_storage_url(url), create=True)
            study = optuna.create_study(storage=storage, study_name="ascii")
            study.set_user_attr("note", "µ and é")
            assert optuna.load_study(study_name="ascii", storage=storage).user_attrs == {
                "note": "µ and é"
            }
            storage.engine.dispose()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
