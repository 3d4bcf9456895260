"""Storage URLs: defaults, validation, and the engine settings each SQL dialect needs."""

from __future__ import annotations

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
SQLITE_BUSY_TIMEOUT_S = 60

_DRIVER_HINTS = {
    "postgresql": "pip install 'cifar-hpo[postgres]' (psycopg) and use postgresql+psycopg://",
    "mysql": "pip install 'cifar-hpo[mysql]' (PyMySQL) and use mysql+pymysql://",
}


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

    def engine_kwargs(self) -> dict[str, Any]:
        """Engine settings per dialect.

        SQLite: a long busy timeout, since workers and the dashboard share one file. PostgreSQL:
        `pool_pre_ping`, which Optuna sets for MySQL only, so that connections cut by a server
        restart are replaced instead of failing the next query. Servers: a connect timeout, so an
        unreachable host fails in seconds. psycopg 3: no server-side prepared statements, which
        a pooler in transaction mode (PgBouncer) would send to a server connection that never
        prepared them; our queries are too few and too cheap to plan for that to cost anything.
        """
        if self.is_sqlite:
            return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if self.url.get_driver_name() == "psycopg":
            kwargs["connect_args"]["prepare_threshold"] = None
        return kwargs


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
    parsed = StorageURL(url=url)
    if parsed.dialect not in ("sqlite", "postgresql", "mysql"):
        raise StorageError(
            f"unsupported storage {parsed.render()!r}: use sqlite, postgresql or mysql"
        )
    try:
        url.get_dialect()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError):
        hint = _DRIVER_HINTS.get(parsed.dialect, "install the database driver")
        raise StorageError(f"no driver for {parsed.render()!r}: {hint}") from None
    return parsed
