"""Storage URLs: defaults, validation, and the engine settings each SQL dialect needs."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from storage.errors import StorageError

DEFAULT_STORAGE = "sqlite:///hpo.db"
STORAGE_ENV = "HPO_STORAGE"
CONNECT_TIMEOUT_S = 10
# A connection made on a loaded machine can take seconds (seen: over 2 s with 16 workers on 2
# cores), so a short grace period does not shorten the connect timeout below this.
MIN_CONNECT_TIMEOUT_S = 5
# How long a command that is not a worker waits on a silent network before it says so; a worker
# waits its heartbeat grace period (`--grace`).
DEFAULT_NETWORK_TIMEOUT_S = 60.0
SQLITE_BUSY_TIMEOUT_S = 60

_DRIVER_HINTS = {
    "postgresql": "pip install 'cifar-hpo[postgres]' (psycopg) and use postgresql+psycopg://",
    "mysql": "pip install 'cifar-hpo[mysql]' (PyMySQL) and use mysql+pymysql://",
}


_PROJECT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


@dataclass(frozen=True, kw_only=True)
class StorageURL:
    url: URL

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, or None for SQLite in memory and for servers."""
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    def render(self) -> str:
        """The URL as given, with any password replaced by ***."""
        return self.url.render_as_string(hide_password=True)

    def secret(self) -> str:
        """The URL with its password, for the engine only."""
        return self.url.render_as_string(hide_password=False)

    def engine_kwargs(self, network_timeout_s: float = DEFAULT_NETWORK_TIMEOUT_S) -> dict[str, Any]:
        """Engine settings per dialect.

        SQLite: a long busy timeout, since workers and the dashboard share one file. PostgreSQL:
        `pool_pre_ping`, which Optuna sets for MySQL only, so that connections cut by a server
        restart are replaced instead of failing the next query. Servers: a connect timeout, so an
        unreachable host fails in seconds. psycopg 3: no server-side prepared statements, which
        a pooler in transaction mode (PgBouncer) would send to a server connection that never
        prepared them; our queries are too few and too cheap to plan for that to cost anything.
        psycopg 3: UTF-8 on the wire, whatever the database's encoding. Servers:
        `network_timeout_s` bounds every wait on a silent network (`socket_timeouts`).
        """
        if self.is_sqlite:
            return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
        kwargs["connect_args"] = socket_timeouts(self.dialect, network_timeout_s)
        if self.url.get_driver_name() == "psycopg":
            kwargs["connect_args"]["prepare_threshold"] = None
            # A database made without an encoding (SQL_ASCII: `initdb` with no locale) makes
            # psycopg return bytes, on which SQLAlchemy's first query fails with a TypeError.
            # Optuna's text is UTF-8 in any case.
            kwargs["connect_args"]["client_encoding"] = "utf8"
        return kwargs


def socket_timeouts(dialect: str, network_timeout_s: float) -> dict[str, int]:
    """Client-side limits that turn a silent network (a node cut off, packets dropped with no
    error to either side) into a connection error within about `network_timeout_s`, which the
    outage path then handles (storage.retries). Without them a read blocks until the kernel
    gives up: ≈15 minutes of retransmissions, or 2 hours of keepalive when only the replies are
    lost. The server's own keepalives (storage.session_limits) free its side, not ours.

    PostgreSQL (libpq's parameters, which psycopg passes on): `tcp_user_timeout` ends a
    connection whose sent data stays unacknowledged for half the limit (a request into the
    void), and keepalive probes, which a live server's kernel answers even while a query or a
    lock wait runs, end one whose replies stopped coming (idle + count × interval ≈ 5/6 of the
    limit).
    MySQL (PyMySQL): read and write timeouts on the socket. A read there waits for the query's
    answer, so it must outlast the longest wait the server may make it do: a row lock, bounded
    at twice the grace (`innodb_lock_wait_timeout`, storage.session_limits).
    """
    seconds = max(3, math.ceil(network_timeout_s))
    # A reconnection is part of noticing too (SQLAlchemy's pre-ping reconnects silently).
    connect = {"connect_timeout": min(CONNECT_TIMEOUT_S, max(MIN_CONNECT_TIMEOUT_S, seconds // 2))}
    if dialect == "postgresql":
        return {
            **connect,
            "keepalives": 1,
            "keepalives_idle": max(1, seconds // 3),
            "keepalives_interval": max(1, seconds // 6),
            "keepalives_count": 3,
            # Half the limit: a lost connection is noticed in one half, and the reconnection
            # attempt (whose unanswered SYNs the same timeout ends) fails in the other.
            "tcp_user_timeout": seconds * 500,  # milliseconds
        }
    if dialect == "mysql":
        return {**connect, "read_timeout": 2 * seconds + 2, "write_timeout": seconds}
    return connect


def resolve_storage_url(given: str | None) -> str:
    """`--storage` if given, else `$HPO_STORAGE`, else the SQLite file `hpo.db`."""
    return given or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def masked(text: str) -> str:
    """A storage URL fit to print: its password replaced by *** (SQLAlchemy's rendering); of a
    URL that does not parse, only the scheme, since the rest may hold a password."""
    try:
        return StorageURL(url=make_url(text)).render()
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return f"{text.partition(':')[0][:40]}://…"


def parse_storage_url(text: str) -> StorageURL:
    try:
        url = make_url(text)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(
            f"malformed storage URL {masked(text)!r}; expected e.g. sqlite:///hpo.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    # A bare scheme means SQLAlchemy's default driver (psycopg2, MySQLdb), which the project does
    # not install: the project's drivers instead.
    url = url.set(drivername=_PROJECT_DRIVERS.get(url.drivername, url.drivername))
    parsed = StorageURL(url=url)
    if parsed.dialect not in ("sqlite", "postgresql", "mysql"):
        raise StorageError(
            f"unsupported storage {parsed.render()!r}: use sqlite, postgresql or mysql"
        )
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError):
        hint = _DRIVER_HINTS.get(parsed.dialect, "install the database driver")
        raise StorageError(f"no driver for {parsed.render()!r}: {hint}") from None
    return parsed
