"""One creation at a time per database, by the database's own mutual exclusion.

A Slurm array or a Kubernetes Job runs the same `hpo create` on every node at once. Optuna's
table creation and a study's queue are not safe to build twice at the same moment: racing
creators failed on PostgreSQL's catalog (`pg_type_typname_nsp_index`) and queued a 128-point
grid 495 times. Under this lock the first creator builds the tables and the queue, and each one
after it finds the study complete. The lock is the server's, so it holds across machines, and it
is released by the server when the holder's connection ends, crashed or not:
- PostgreSQL: a transaction-level advisory lock (`pg_try_advisory_xact_lock`), scoped to the
  database, held by a transaction that stays open while the study is made, and tried in short
  transactions until it is free. A session-level lock would break behind PgBouncer in
  transaction mode, which hands the session's server connection to other clients between
  transactions, and a waiter blocked inside its transaction would pin one (RELIABILITY.md);
- MySQL/MariaDB: a named lock (`GET_LOCK`), named after the database;
- SQLite: an exclusive lock on a file beside the database (one machine only, as SQLite is).
"""

from __future__ import annotations

import fcntl
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy

from storage.errors import StorageError
from storage.open import check_sqlite_file, describe_error
from storage.urls import StorageURL

LOCK_NAME = "hpo-create"
WAIT_S = 600  # a creation takes seconds; waiting longer means something is wrong
MYSQL_WAIT_STEP_S = 20
HOLD_S = 300  # PostgreSQL: the longest the lock's transaction may idle (a frozen creator)


@contextmanager
def creation_lock(url: StorageURL) -> Iterator[None]:
    if url.is_sqlite:
        with _file_lock(url):
            yield
        return
    engine = sqlalchemy.create_engine(url.secret(), **url.engine_kwargs())
    try:
        with engine.connect() as connection:
            _acquire(connection, url)
            try:
                yield
            finally:
                _release(connection, url)
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(describe_error(url, error)) from None
    finally:
        engine.dispose()


# PostgreSQL's advisory locks take a 64-bit key and are scoped to the current database.
_PG_KEY = zlib.crc32(LOCK_NAME.encode())


def _mysql_name(url: StorageURL) -> str:
    # MySQL's named locks are server-wide: the database's name keeps them apart (64 characters).
    return f"{LOCK_NAME}:{url.url.database}"[:64]


def _acquire(connection: sqlalchemy.Connection, url: StorageURL) -> None:
    if url.dialect == "postgresql":
        _acquire_postgres(connection, url)
        return  # held until the transaction ends
    # Waits of at most MYSQL_WAIT_STEP_S each: a longer one would outlast the socket's read
    # timeout (storage.urls.socket_timeouts), which is what notices a silent network.
    deadline = time.monotonic() + WAIT_S
    while True:
        step = max(1, min(MYSQL_WAIT_STEP_S, round(deadline - time.monotonic())))
        got = connection.execute(
            sqlalchemy.text("SELECT GET_LOCK(:name, :wait)"),
            {"name": _mysql_name(url), "wait": step},
        ).scalar()
        connection.commit()  # the lock is the session's; no transaction stays open while held
        if got == 1:
            return
        if time.monotonic() >= deadline:
            raise _held_too_long(url)


def _acquire_postgres(connection: sqlalchemy.Connection, url: StorageURL) -> None:
    """Try the lock in short transactions until it is free. A waiter that blocked inside its
    transaction would pin a server connection behind a pooler: as many waiters as the pool has
    connections would leave none for the holder's own work, and the holder would idle in its
    transaction until the pooler ended it."""
    deadline = time.monotonic() + WAIT_S
    delay = 0.05
    while True:
        # The transaction idles while other connections make the study; a frozen creator's is
        # ended by the server, and its lock with it.
        connection.execute(
            sqlalchemy.text(f"SET LOCAL idle_in_transaction_session_timeout = '{HOLD_S}s'")
        )
        got = connection.execute(
            sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PG_KEY}
        ).scalar()
        if got:
            return
        connection.rollback()  # hands the server connection back while waiting
        if time.monotonic() + delay > deadline:
            raise _held_too_long(url)
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _held_too_long(url: StorageURL) -> StorageError:
    return StorageError(f"another hpo create on {url.render()} held its lock for over {WAIT_S} s")


def _release(connection: sqlalchemy.Connection, url: StorageURL) -> None:
    if url.dialect == "mysql":
        connection.execute(
            sqlalchemy.text("SELECT RELEASE_LOCK(:name)"), {"name": _mysql_name(url)}
        )
    connection.commit()  # PostgreSQL: ending the transaction releases the lock


@contextmanager
def _file_lock(url: StorageURL) -> Iterator[None]:
    path = url.sqlite_path
    if path is None:  # in memory: one process
        yield
        return
    check_sqlite_file(url, create=True)  # the lock file goes beside it
    with path.with_name(path.name + ".create-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
