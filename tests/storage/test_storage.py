import sqlite3
from pathlib import Path

import pytest

from storage import StorageError, open_storage, parse_storage_url, resolve_storage_url


def test_default_is_hpo_storage_env_then_sqlite(monkeypatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert resolve_storage_url(None) == "sqlite:///hpo.db"
    monkeypatch.setenv("HPO_STORAGE", "postgresql+psycopg://u@h/db")
    assert resolve_storage_url(None) == "postgresql+psycopg://u@h/db"
    assert resolve_storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_engine_settings_per_dialect() -> None:
    assert parse_storage_url("sqlite:///a.db").engine_kwargs()["connect_args"]["timeout"] >= 30
    pg = parse_storage_url("postgresql+psycopg://u@h/db").engine_kwargs()
    assert pg["pool_pre_ping"] is True and pg["connect_args"]["connect_timeout"] > 0
    assert parse_storage_url("mysql+pymysql://u@h/db").engine_kwargs()["pool_pre_ping"] is True


def test_a_silent_network_is_bounded_by_the_grace_period() -> None:
    """The client's own socket limits, derived from the worker's grace period (60 s here);
    tests/test_partition.py cuts a worker's network for real."""
    pg = parse_storage_url("postgresql+psycopg://u@h/db").engine_kwargs(60)["connect_args"]
    assert pg["keepalives"] == 1 and pg["tcp_user_timeout"] == 30_000
    # Probes start and end within the grace period: idle + count × interval.
    assert pg["keepalives_idle"] + pg["keepalives_count"] * pg["keepalives_interval"] <= 60
    mysql = parse_storage_url("mysql+pymysql://u@h/db").engine_kwargs(60)["connect_args"]
    # A read waits for the answer: longer than the longest lock wait the server may impose.
    assert mysql["read_timeout"] > 2 * 60 and mysql["write_timeout"] == 60
    assert pg["connect_timeout"] == mysql["connect_timeout"] == 10
    tight = parse_storage_url("postgresql+psycopg://u@h/db").engine_kwargs(4)["connect_args"]
    assert tight["connect_timeout"] == 5 and tight["tcp_user_timeout"] == 2_000


def test_passwords_never_appear_in_messages() -> None:
    url = parse_storage_url("postgresql+psycopg://user:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in url.render()
    with pytest.raises(StorageError) as caught:
        open_storage(parse_storage_url("postgresql+psycopg://user:hunter2@127.0.0.1:1/db"))
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed storage URL"),
        ("redis://127.0.0.1:6379", "unsupported storage"),
        ("postgresql+nodriver://u@h/db", "no driver"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(parse_storage_url(url))


def test_reading_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StorageError, match="no study database"):
        open_storage(parse_storage_url(f"sqlite:///{path}"))
    assert not path.exists()
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'no' / 'x.db'}"), create=True)


@pytest.mark.parametrize(
    ("schema", "advice"),
    [("v99.0.0.a", "pip install -U optuna"), ("v3.0.0.a", "optuna storage upgrade")],
)
def test_schema_of_another_optuna_version(tmp_path: Path, schema: str, advice: str) -> None:
    path = tmp_path / "old.db"
    open_storage(parse_storage_url(f"sqlite:///{path}"), create=True)
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE alembic_version SET version_num = '{schema}'")
    with pytest.raises(StorageError, match=f"schema \\({schema}\\) is not the one") as raised:
        open_storage(parse_storage_url(f"sqlite:///{path}"))
    assert advice in str(raised.value)


@pytest.mark.server
def test_server_databases_open_and_empty_ones_are_not_written(
    postgres_url: str, mysql_url: str
) -> None:
    for url in (postgres_url, mysql_url):
        with pytest.raises(StorageError, match="holds no Optuna studies"):
            open_storage(parse_storage_url(url))
        storage = open_storage(parse_storage_url(url), create=True)
        assert storage.get_all_studies() == []
        open_storage(parse_storage_url(url))  # now it has the tables
