"""Optuna's own storage contract (`optuna.testing.pytest_storages.StorageTestCase`, the tests
Optuna ships for storages other than its own), run against the storage as `hpo worker` opens it
(storage.open_storage with heartbeats and an outage), on SQLite, PostgreSQL and MariaDB: whatever
the project adds (outage retries, the takeover error, session limits), it keeps Optuna's storage
contract.

Each backend's database is made once per module and emptied before each test, which starts as
Optuna's do, on a storage holding nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase

from storage import open_storage, parse_storage_url
from storage.resilient import ResilientRDBStorage

# Optuna's own bookkeeping tables, which an empty storage keeps.
_KEPT = {"alembic_version", "version_info"}


def _opened(url: str) -> ResilientRDBStorage:
    return open_storage(
        parse_storage_url(url), create=True, heartbeat_interval=60, grace_period=120, outage_s=30
    )


def _emptied(storage: ResilientRDBStorage) -> ResilientRDBStorage:
    tables = sqlalchemy.MetaData()
    tables.reflect(storage.engine)
    with storage.engine.begin() as connection:
        for table in reversed(tables.sorted_tables):
            if table.name not in _KEPT:
                connection.execute(table.delete())
    return storage


@pytest.fixture(scope="module")
def _sqlite(tmp_path_factory: pytest.TempPathFactory) -> ResilientRDBStorage:
    return _opened(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'optuna.db'}")


@pytest.fixture(scope="module")
def _postgres(module_postgres_url: str) -> Iterator[ResilientRDBStorage]:
    storage = _opened(module_postgres_url)
    yield storage
    storage.engine.dispose()  # or the database cannot be dropped


@pytest.fixture(scope="module")
def _mariadb(module_mysql_url: str) -> Iterator[ResilientRDBStorage]:
    storage = _opened(module_mysql_url)
    yield storage
    storage.engine.dispose()


# Optuna stores datetimes as MySQL's DATETIME, whole seconds unless declared with a fraction,
# which Optuna's schema does not: on MariaDB, start and completion times one millisecond apart
# read back equal. Optuna's own test suite leaves MySQL out of this test for the same reason.
_MARIADB_DATETIME = pytest.mark.xfail(
    reason="MariaDB's DATETIME in Optuna's schema keeps whole seconds: times 1 ms apart compare "
    "equal",
    strict=False,  # passes when the times fall within one second
)
_XFAIL_ON_MARIADB = {
    "test_create_new_trial",
    "test_create_new_trial_with_template_trial",
    "test_get_trial",
    "test_get_all_trials",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.server),
                        pytest.param("mariadb", marks=pytest.mark.server)])  # fmt: skip
def storage(request: pytest.FixtureRequest) -> BaseStorage:
    compares_now = "start_time1" not in request.node.name  # the fixed 2022 dates are whole
    on_mariadb = request.param == "mariadb" and request.node.originalname in _XFAIL_ON_MARIADB
    if on_mariadb and compares_now:
        request.node.add_marker(_MARIADB_DATETIME)
    return _emptied(request.getfixturevalue(f"_{request.param}"))


class TestTheWorkersStorage(StorageTestCase):
    """Every one of Optuna's storage tests, on each backend."""
