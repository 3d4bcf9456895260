"""Many workers, few server connections: real workers through a real PgBouncer (transaction
mode) in front of a PostgreSQL whose `max_connections` is below what they would open directly;
and a worker that the server turns away waits for a slot instead of failing."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.harness.pooled_postgres import (
    POOL_SETTINGS,
    Missing,
    PooledPostgres,
    pooled_postgres,
    private_folder,
    wait_for_pooler,
)
from tests.harness.preloaded import PreloadedProcess
from tests.helpers import (
    REPO,
    check_finished_grid,
    create_everywhere,
    create_small_grid,
    free_port,
    run_hpo,
    start_hpo,
)

pytestmark = [pytest.mark.slow, pytest.mark.server]
WORKERS = 16
MAX_CONNECTIONS = 12  # 16 workers open 2 connections each (queries and heartbeats): 32
POOL_SIZE = 6


@pytest.fixture(scope="module")
def cluster() -> Iterator[PooledPostgres]:
    try:
        with pooled_postgres(max_connections=MAX_CONNECTIONS, pool_size=POOL_SIZE) as started:
            yield started
    except Missing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: .ci/run installs it)")
        pytest.skip(str(missing))


def _worker(url: str, cwd: Path, study: str = "grid") -> PreloadedProcess:
    return start_hpo(
        *("worker", "--storage", url, "--study", study, "--device", "cpu"),
        *("--checkpoint-dir", str(cwd / "checkpoints"), "--heartbeat", "2", "--grace", "10"),
        cwd=cwd,
        env={"OMP_NUM_THREADS": "1"},
    )


class _Peaks:
    """The most connections seen at once, on the server and at the pooler, sampled."""

    def __init__(self, cluster: PooledPostgres) -> None:
        self.cluster = cluster
        self.server = self.clients = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _Peaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        with self.cluster.admin() as admin:
            while not self._stop.wait(0.1):
                self.server = max(self.server, self.cluster.server_connections(admin))
                self.clients = max(self.clients, self.cluster.pooler_clients())


def test_sixteen_workers_through_pgbouncer_run_the_grid_exactly_once(
    cluster: PooledPostgres, tmp_path: Path
) -> None:
    url = cluster.pooled_url()
    create_small_grid(url, epochs=1)  # the creation lock, through the pooler
    started = time.perf_counter()
    with _Peaks(cluster) as peaks:
        workers = [_worker(url, tmp_path) for _ in range(WORKERS)]
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    seconds = time.perf_counter() - started
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    check_finished_grid(url, tmp_path)
    print(
        f"pgbouncer: {WORKERS} workers, 128-point grid in {seconds:.0f} s; at most "
        f"{peaks.clients} client connections to PgBouncer, {peaks.server} server connections "
        f"(max_connections {cluster.max_connections}, pool size {cluster.pool_size})"
    )
    # More clients than the server has slots, and the server never held more than the pool.
    assert peaks.clients > cluster.max_connections
    assert 0 < peaks.server <= cluster.pool_size


def test_simultaneous_creates_through_pgbouncer_leave_one_queue(
    cluster: PooledPostgres, tmp_path: Path
) -> None:
    """The creation lock holds under transaction pooling: a session-level advisory lock would
    stay on a server connection that PgBouncer hands to the next client."""
    grid = ("--sampler", "grid", "--dataset", "synthetic", "--subset", "10", "--epochs", "1")
    results = create_everywhere(cluster.pooled_url(), tmp_path, *[grid] * 5)
    assert [code for code, _ in results] == [0] * 5, "\n".join(out for _, out in results)
    assert sum("'job' created" in out for _, out in results) == 1, results
    with cluster.admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM trials t JOIN studies s USING (study_id) "
            "WHERE s.study_name = 'job' AND t.state = 'WAITING'"
        ).fetchone()
    assert row is not None and row[0] == 128


def test_a_worker_turned_away_by_a_full_server_waits_for_a_slot(
    cluster: PooledPostgres, tmp_path: Path
) -> None:
    url = cluster.direct_url()
    create_small_grid(url, epochs=1, preset="momentum", study="full")
    holders: list[psycopg.Connection] = []
    try:
        with cluster.admin() as admin:
            free = cluster.max_connections - 1 - cluster.server_connections(admin)
            # All slots taken: the admin connection's, the pooler's idle ones, and these.
            holders = [cluster.admin() for _ in range(free)]
            worker = _worker(url, tmp_path, study="full")
            assert worker.stdout is not None
            first_line = worker.stdout.readline()
        assert "too many clients" in first_line and "waiting up to" in first_line, first_line
        assert "postgres@" in first_line  # which database, password masked (none here)
    finally:
        for holder in holders:
            holder.close()
    print(f"a worker turned away by a full server said: {first_line.strip()}")
    out = first_line + worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "worker done: 16 trials" in out, out[-3000:]


def test_the_compose_files_pgbouncer_serves_hpo(cluster: PooledPostgres) -> None:
    """docker/pgbouncer/start.sh, the compose service's entry point, run here as the container
    would run it (its address and port moved to this machine's loopback): a password-protected
    PgBouncer in front of the test's server, through which hpo creates and reads a study."""
    folder = private_folder("hpo-compose-pgbouncer-")
    # Copies: the postgres user may not be able to read the checkout.
    for source in (REPO / "docker" / "pgbouncer" / "start.sh", POOL_SETTINGS):
        shutil.copy(source, folder / source.name)
    port, password = free_port(), "compose-local-only"
    env = {
        **os.environ,
        "HPO_DB_USER": "postgres",
        "HPO_DB_PASSWORD": password,
        "HPO_DB_NAME": "hpo",
        "HPO_DB_SERVER": "127.0.0.1",
        "HPO_DB_SERVER_PORT": str(cluster.server_port),
        "PGBOUNCER_LISTEN_ADDR": "127.0.0.1",
        "PGBOUNCER_PORT": str(port),
        "PGBOUNCER_CONF_DIR": str(folder / "run"),
        "PGBOUNCER_POOL_INI": str(folder / POOL_SETTINGS.name),
    }
    # setpriv, not runuser: runuser forwards SIGTERM and kills the entry point 2 s later, so it
    # would not show the entry point's own handling of SIGTERM (and PgBouncer outlive it).
    as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    pooler = subprocess.Popen(
        [*(as_user if os.geteuid() == 0 else []), "sh", str(folder / "start.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_pooler(port, password)
        url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/hpo"
        # In processes of their own, which leave no client behind (this process's engines would
        # keep their connections, and PgBouncer, stopped below, waits for its clients).
        created = run_hpo(
            *("create", "--storage", url, "--study", "compose", "--sampler", "tpe"),
            *("--n-trials", "2", "--dataset", "synthetic"),
        )
        assert created.returncode == 0, created.stderr
        status = run_hpo("status", "--storage", url, "--study", "compose")
        assert status.returncode == 0 and "2 waiting" in status.stdout, status.stdout
        refused = run_hpo("status", "--storage", url.replace(password, "wrong"), "--study", "x")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert password not in created.stdout + status.stdout + refused.stderr

        # SIGTERM (compose's stop) while a client is connected, as a worker handing its trial
        # back is: PgBouncer goes on serving it, and stops, cleanly, once it has left.
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as client:
            pooler.terminate()
            time.sleep(1)  # several of the entry point's looks at its clients
            assert pooler.poll() is None, pooler.communicate()[0]
            assert client.execute("SELECT 1").fetchone() == (1,)  # a hand-back's writes
        assert pooler.wait(timeout=20) == 0, pooler.communicate()[0]
    finally:
        if pooler.poll() is None:
            pooler.terminate()
        pooler.communicate(timeout=40)
        shutil.rmtree(folder, ignore_errors=True)
