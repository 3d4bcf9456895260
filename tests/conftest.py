"""Shared fixtures: throwaway PostgreSQL and MariaDB databases (helpers that tests import are in
tests/helpers.py).

Tests that need a server skip when it is unreachable on a laptop, but fail under CI=true, where
the servers are part of the machine and a skip would hide a broken test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the cores: one thread each, for them and the processes they
    # start, rather than four threads spinning on two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {type(error).__name__}: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: server tests must run)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    yield from _postgres_database()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A PostgreSQL database shared by one test module's tests, dropped after the module."""
    yield from _postgres_database()


def _postgres_database() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(**PG_ADMIN, autocommit=True, connect_timeout=5)
    except Exception as error:  # driver missing or server down: same verdict
        _unavailable("PostgreSQL at 127.0.0.1:5432", error)
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MariaDB/MySQL database, dropped afterwards."""
    yield from _mysql_database()


@pytest.fixture(scope="module")
def module_mysql_url() -> Iterator[str]:
    """A MariaDB/MySQL database shared by one test module's tests, dropped after the module."""
    yield from _mysql_database()


def _mysql_database() -> Iterator[str]:
    try:
        import pymysql

        admin = pymysql.connect(**MYSQL_ADMIN, autocommit=True, connect_timeout=5)
    except Exception as error:
        _unavailable("MariaDB at 127.0.0.1:3306", error)
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@dataclass(frozen=True)
class Database:
    """A fresh database of one kind (sqlite, postgres or mariadb), dropped after the test."""

    kind: str
    url: str


_FIXTURE_OF = {"sqlite": "sqlite_url", "postgres": "postgres_url", "mariadb": "mysql_url"}
_SERVERS = [pytest.param(kind, marks=pytest.mark.server) for kind in ("postgres", "mariadb")]


@pytest.fixture(params=["sqlite", *_SERVERS])
def database(request: pytest.FixtureRequest) -> Database:
    """The storage supplier: the test runs once on each storage the project supports, as
    Optuna's own tests run over its storages (its `StorageSupplier`)."""
    return Database(kind=request.param, url=request.getfixturevalue(_FIXTURE_OF[request.param]))


@pytest.fixture(params=_SERVERS)
def server_database(request: pytest.FixtureRequest) -> Database:
    """The same over the servers only: what SQLite cannot do (row locks, many workers)."""
    return Database(kind=request.param, url=request.getfixturevalue(_FIXTURE_OF[request.param]))


# Test order, by mark: the `slow` files (real processes, each a minute or more on 2 cores) are
# started first, so that the two test processes, taking a file at a time, fill in with the quick
# files at the end instead of one process finishing a long file alone.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: files whole
