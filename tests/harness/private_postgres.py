"""A PostgreSQL server of the test's own (initdb, pg_ctl), which a test may stop, restart and
cut the sessions of without touching the machine's server that other tests use at the same time.
It runs as the `postgres` user and listens on 127.0.0.1 only."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.harness.pooled_postgres import DATABASE, _server_bin, as_postgres, private_folder
from tests.helpers import free_port


@dataclass(frozen=True, kw_only=True)
class PrivatePostgres:
    home: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            as_postgres([str(_server_bin("pg_ctl")), "-D", str(self.home / "data"), *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.home}"
            " -c fsync=off -c shared_buffers=16MB -c max_connections=60"
        )
        self._ctl("-o", options, "-l", str(self.home / "server.log"), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, as on a restart by an administrator."""
        self._ctl("-m", "fast", "-w", "stop")

    def terminate_sessions(self) -> int:
        """End every client session but this one (pg_terminate_backend); how many."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    home = private_folder("hpo-private-")
    server = PrivatePostgres(home=home, port=free_port())
    try:
        subprocess.run(
            as_postgres([str(_server_bin("initdb")), "-D", str(home / "data"), "-U", "postgres",
                         "-A", "trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        server.start()
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
            autocommit=True,
        ) as admin:  # fmt: skip
            admin.execute(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        if (home / "data" / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([str(_server_bin("pg_ctl")), "-D", str(home / "data"), "-m",
                             "immediate", "stop"]),
                capture_output=True,
            )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)



