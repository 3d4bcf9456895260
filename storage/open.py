"""Opening Optuna's RDB storage with one-line errors instead of driver tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from storage.errors import StorageError
from storage.resilient import ResilientRDBStorage
from storage.retries import reason, with_retries
from storage.session_limits import DEFAULT_IDLE_TRANSACTION_S, limit_sessions
from storage.urls import DEFAULT_NETWORK_TIMEOUT_S, StorageURL

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]
T = TypeVar("T")


def open_storage(
    url: StorageURL,
    *,
    create: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
    outage_s: float = 0.0,
    network_timeout_s: float | None = None,
) -> ResilientRDBStorage:
    """Open the study database at `url`.

    With `create=False` nothing is written: a missing SQLite file or a database without Optuna's
    tables is an error rather than a new empty database. With `create=True` the tables are made
    when missing (the SQLite file's folder must exist). Storage calls wait up to `outage_s`
    seconds for an unavailable database to come back (`storage.resilient`; a worker's
    `--outage`), and so does the opening while the server has no connection slot free; the
    commands that are not workers fail at once. A silent network (a node cut off) turns into an
    error within about `network_timeout_s` (default: the grace period, else
    storage.urls.DEFAULT_NETWORK_TIMEOUT_S), which is then an outage like any other.
    """
    check_sqlite_file(url, create)

    def connect() -> ResilientRDBStorage:
        if not create:
            _check_has_tables(url)
        opened = ResilientRDBStorage(
            url,
            outage_s=outage_s,
            network_timeout_s=network_timeout_s or grace_period or DEFAULT_NETWORK_TIMEOUT_S,
            # Optuna's own check holds a transaction open while it takes a second connection and
            # reads its migration scripts: behind a pooler in transaction mode, workers starting
            # together each pinned a server connection that way, waiting for another, until the
            # pooler ended them. The same check, one connection at a time:
            skip_compatibility_check=True,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_trial_callback,
            skip_table_creation=not create,
        )
        _check_schema_version(opened, url)
        return opened

    try:
        storage = _waiting_while_unavailable(connect, url, outage_s)
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(describe_error(url, error)) from None
    except optuna.exceptions.StorageInternalError as error:
        # Optuna's wrapper of a driver error in its set-up sessions: say the driver's words.
        cause = error.__cause__
        if isinstance(cause, sqlalchemy.exc.SQLAlchemyError):
            raise StorageError(describe_error(url, cause)) from None
        raise StorageError(f"{url.render()}: {error}") from None
    # A frozen worker's open transaction is ended by the server within the grace period.
    limit_sessions(storage.engine, grace_period or DEFAULT_IDLE_TRANSACTION_S)
    return storage


def check_sqlite_file(url: StorageURL, create: bool) -> None:
    """For a SQLite file: its folder exists (to create it), or the file does (to open it)."""
    path = url.sqlite_path
    if path is None:
        return
    if create:
        if not path.parent.resolve().is_dir():
            raise StorageError(f"cannot create {path}: folder {path.parent} does not exist")
        if path.exists() and not path.is_file():
            raise StorageError(f"{path} is not a file")
    elif not path.is_file():
        raise StorageError(f"no study database at {path} (create a study first with hpo create)")


def _waiting_while_unavailable(connect: Callable[[], T], url: StorageURL, wait_s: float) -> T:
    """`connect()`, tried again for up to `wait_s` seconds while the database cannot be reached
    for now: the server is down (nothing listens), starting up, shutting down or restarting,
    all its connection slots are taken (many workers starting at once, or a pooler's limit),
    or the host name does not resolve (DNS on a cluster fails for short spells, and a typo
    looks the same: the line says which host). What can never work fails at once: a wrong
    password or user, a database that does not exist, an unknown driver. Said once, on one
    line, and again only when the reason changes."""
    said: set[str] = set()

    def explain(error: Exception, delay: float) -> str | None:
        why = reason(error)
        if why in said:
            return None
        said.add(why)
        return f"{url.render()} is not available ({why}); waiting up to {wait_s:.0f} s for it"

    return with_retries(
        connect,
        wait_s,
        "open the storage",
        retry_if=_unavailable_for_now,
        first_delay_s=1.0,
        explain=explain,
    )


# PostgreSQL: too_many_connections, cannot_connect_now (starting up, shutting down, in
# recovery), and a connection ended by the server while it was being set up (admin_shutdown,
# crash_shutdown: a restart or an administrator's pg_terminate_backend); MySQL and MariaDB:
# ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, no server at the socket or host (2002, 2003; PyMySQL
# reports an unknown host as 2003 too), and a connection lost once made (2006, 2013).
_UNAVAILABLE_SQLSTATES = {"53300", "57P03", "57P01", "57P02"}
_UNAVAILABLE_MYSQL_CODES = {1040, 1053, 2002, 2003, 2006, 2013}
# What libpq says at connect time, where psycopg gives no SQL state: the server full (and
# PgBouncer's max_client_conn), starting or stopping, nothing listening, the host unreachable or
# not resolved.
_UNAVAILABLE_MESSAGES = (
    "too many clients already",
    "no more connections allowed",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "Connection refused",
    "server closed the connection unexpectedly",
    "No route to host",
    "Network is unreachable",
    "Connection timed out",
    "timeout expired",
    "could not translate host name",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No such file or directory",  # a Unix socket not there yet
)


def _unavailable_for_now(error: BaseException) -> bool:
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__  # Optuna's wrapper of the driver's error in its set-up sessions
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    orig = error.orig
    if getattr(orig, "sqlstate", None) in _UNAVAILABLE_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in _UNAVAILABLE_MYSQL_CODES:
        return True
    return any(message in str(orig) for message in _UNAVAILABLE_MESSAGES)


def _check_schema_version(storage: RDBStorage, url: StorageURL) -> None:
    current, head = storage.get_current_version(), storage.get_head_version()
    if current == head:
        return
    if current in storage.get_all_versions():
        fix = f"upgrade it: optuna storage upgrade --storage '{url.render()}' (with the password)"
    else:
        fix = "it was made by a newer Optuna: pip install -U optuna"
    raise StorageError(
        f"{url.render()}: the database's schema ({current}) is not the one this Optuna "
        f"{optuna.__version__} uses ({head}); {fix}"
    )


def _check_has_tables(url: StorageURL) -> None:
    engine = sqlalchemy.create_engine(url.secret(), **url.engine_kwargs())
    try:
        with engine.connect() as connection:
            has_studies = sqlalchemy.inspect(connection).has_table("studies")
    finally:
        engine.dispose()
    if not has_studies:
        raise StorageError(f"{url.render()} holds no Optuna studies (create one with hpo create)")


def describe_error(url: StorageURL, error: sqlalchemy.exc.SQLAlchemyError) -> str:
    """One line saying what went wrong, without the driver's stack of context."""
    if url.is_sqlite:
        return f"cannot use SQLite database {url.sqlite_path}: {reason(error)}"
    return f"cannot use database {url.render()}: {reason(error)}"
