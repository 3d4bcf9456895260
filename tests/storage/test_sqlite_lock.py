"""One worker per SQLite file (storage.sqlite_lock)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from storage import StorageError, parse_storage_url
from storage.sqlite_lock import one_worker_per_sqlite_file


def test_a_second_holder_of_the_same_file_is_refused_until_the_first_lets_go(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with one_worker_per_sqlite_file(parse_storage_url(url)):
        with (
            pytest.raises(StorageError, match="another worker is already running"),
            one_worker_per_sqlite_file(parse_storage_url(url)),
        ):
            pass
        with one_worker_per_sqlite_file(parse_storage_url(f"sqlite:///{tmp_path / 'other.db'}")):
            pass  # another file: no conflict
    with one_worker_per_sqlite_file(parse_storage_url(url)):
        pass  # released


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from storage import parse_storage_url\n"
            "from storage.sqlite_lock import one_worker_per_sqlite_file\n"
            f"with one_worker_per_sqlite_file(parse_storage_url({url!r})):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StorageError), one_worker_per_sqlite_file(parse_storage_url(url)):
            pass
    finally:
        holder.kill()
        holder.wait()
    with one_worker_per_sqlite_file(parse_storage_url(url)):
        pass  # a killed holder leaves no lock behind


def test_server_urls_take_no_lock(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg://u@127.0.0.1/db"
    entered = []
    with (
        one_worker_per_sqlite_file(parse_storage_url(url)),
        one_worker_per_sqlite_file(parse_storage_url(url)),  # a second holder is not refused
    ):
        entered.append(True)
    assert entered == [True]
    assert list(tmp_path.iterdir()) == []  # and no lock file was made anywhere near
