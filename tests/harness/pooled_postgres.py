"""A private PostgreSQL server with few connection slots, and a real PgBouncer in front of it.

The machine's own PostgreSQL allows 100 connections, more than the pooling tests' workers need;
these tests start a server of their own (initdb, pg_ctl) whose `max_connections` is smaller than
what the workers would open directly, and Debian's PgBouncer in transaction mode before it.
Both run as the `postgres` user (neither runs as root) and listen on 127.0.0.1 only.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.helpers import REPO, free_port

PG_BIN = Path("/usr/lib/postgresql")
DATABASE = "hpo"
POOL_SETTINGS = REPO / "docker" / "pgbouncer" / "pool.ini"


class Missing(Exception):
    """PostgreSQL's server programs or PgBouncer are not installed."""


@dataclass(frozen=True, kw_only=True)
class PooledPostgres:
    server_port: int
    pooler_port: int
    max_connections: int
    pool_size: int

    def direct_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.server_port}/{DATABASE}"

    def pooled_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pooler_port}/{DATABASE}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.server_port, user="postgres", dbname=DATABASE,
            autocommit=True,
        )  # fmt: skip

    def server_connections(self, admin: psycopg.Connection) -> int:
        """Client connections the server holds now, the asking one left out."""
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def pooler_clients(self) -> int:
        """Client connections PgBouncer holds now (its admin console, SHOW POOLS)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.pooler_port, user="postgres", dbname="pgbouncer",
            autocommit=True, cursor_factory=psycopg.ClientCursor,
        ) as console:  # fmt: skip
            cursor = console.execute("SHOW POOLS")
            columns = [c.name for c in cursor.description or []]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        return sum(
            int(row["cl_active"]) + int(row["cl_waiting"])
            for row in rows
            if row["database"] == DATABASE
        )


def _server_bin(name: str) -> Path:
    versions = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not versions:
        raise Missing(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return versions[-1]


def as_postgres(command: list[str]) -> list[str]:
    # initdb, postgres and pgbouncer refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def pooled_postgres(*, max_connections: int, pool_size: int) -> Iterator[PooledPostgres]:
    pgbouncer = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if pgbouncer is None:
        raise Missing("PgBouncer is not installed (apt-get install pgbouncer)")
    initdb, pg_ctl = _server_bin("initdb"), _server_bin("pg_ctl")
    home = private_folder("hpo-pooled-")
    owner = "postgres" if os.geteuid() == 0 else getpass.getuser()
    data = home / "data"
    cluster = PooledPostgres(
        server_port=free_port(),
        pooler_port=free_port(),
        max_connections=max_connections,
        pool_size=pool_size,
    )
    pooler: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            as_postgres([str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust",
                          "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        options = (
            f"-p {cluster.server_port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={home} -c max_connections={max_connections} "
            "-c fsync=off -c shared_buffers=16MB"
        )
        subprocess.run(
            as_postgres([str(pg_ctl), "-D", str(data), "-o", options, "-l",
                          str(home / "server.log"), "-w", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip
        with psycopg.connect(
            host="127.0.0.1", port=cluster.server_port, user="postgres", dbname="postgres",
            autocommit=True,
        ) as admin:  # fmt: skip
            admin.execute(f"CREATE DATABASE {DATABASE}")
        config = home / "pgbouncer.ini"
        (home / "users.txt").write_text('"postgres" ""\n')
        # A copy: the postgres user may not be able to read the checkout.
        shutil.copy(POOL_SETTINGS, home / POOL_SETTINGS.name)
        config.write_text(
            "[databases]\n"
            f"{DATABASE} = host=127.0.0.1 port={cluster.server_port} dbname={DATABASE}\n"
            "[pgbouncer]\n"
            f"%include {home / POOL_SETTINGS.name}\n"  # what the compose file's PgBouncer runs
            f"listen_addr = 127.0.0.1\nlisten_port = {cluster.pooler_port}\n"
            f"unix_socket_dir = {home}\nauth_type = trust\nauth_file = {home / 'users.txt'}\n"
            f"admin_users = postgres\ndefault_pool_size = {pool_size}\n"
        )
        if os.geteuid() == 0:
            for path in (config, home / "users.txt", home / POOL_SETTINGS.name):
                shutil.chown(path, user=owner)
        pooler = subprocess.Popen(
            as_postgres([pgbouncer, str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_pooler(cluster.pooler_port)
        yield cluster
    finally:
        if pooler is not None:
            pooler.terminate()
            pooler.wait(timeout=30)
        if data.exists():
            subprocess.run(
                as_postgres([str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(home, ignore_errors=True)


def private_folder(prefix: str) -> Path:
    """A temporary folder that the `postgres` user owns (when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
    return folder


def wait_for_pooler(port: int, password: str | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname=DATABASE, connect_timeout=2,
                password=password,
            ):  # fmt: skip
                return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise TimeoutError(f"PgBouncer did not start on port {port}")
