"""Benchmark: what a trial's coordination costs as the study grows, ours beside bare Optuna.

    python -m bench.study_scale [--server URL] [--sizes 100,1000,10000] [--trials 20]
                                [--workers 16] [--seconds 20]

Coordination is everything a worker does per trial except training: take a trial, sample its
parameters (TPE over the seed's ranges), the start and finishing writes, the heartbeat, and the
worker's own reads (the progress line's best, whether others still run). On PostgreSQL (`--server`,
a fresh database per run, dropped afterwards), side by side in one run:

1. Queued slots: a TPE study of N empty slots, the queue `hpo create --n-trials N` makes (its
   creation timed). Ours: the worker's own per-trial code (`hpo.study.worker`, with an objective
   that only suggests). Bare Optuna: `study.ask()`, the same suggestions, `study.tell()`, on the
   same study. Per trial: the median time and SQL statements of --trials trials after 5 warm-up
   trials.
2. Finished trials: the same with N COMPLETE trials in the study (and 60 slots queued). TPE's
   sampling grows with the finished trials in both; it is Optuna's cost.
3. The ceiling: --workers worker processes through PgBouncer (transaction pooling, a private
   PostgreSQL server started for the run) take trials from one queue for --seconds, with random
   sampling so that no sampler's CPU is measured: the trials per second the database sustains,
   and the CPU the server used. On a 2-core machine the workers and the server share the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg
import sqlalchemy
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.samplers import RandomSampler, TPESampler

from hpo.record.config import StudyConfig
from hpo.record.seed_grid import BATCH_SIZES, DROPOUTS, LEARNING_RATES, suggest
from hpo.study.queue import NoWorkLeft, WorkQueueStudy, create_study, open_study
from hpo.study.recovery import retry_callback
from hpo.study.worker import Worker, WorkerOptions
from hpo.workqueue.pop import ensure_queue_index
from storage import open_storage, parse_storage_url

WARM_UP = 5
FINISHED_QUEUE = 60  # slots left queued in the finished-trials studies


@dataclass(frozen=True)
class Cost:
    seconds: float  # median per trial
    statements: float  # median SQL statements per trial


class StatementCounter:
    """Counts the SQL statements an engine sends."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.count = 0
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1


def _measure(run_one: Callable[[], None], counter: StatementCounter, trials: int) -> Cost:
    for _ in range(WARM_UP):
        run_one()
    seconds, statements = [], []
    for _ in range(trials):
        before = counter.count
        started = time.perf_counter()
        run_one()
        seconds.append(time.perf_counter() - started)
        statements.append(counter.count - before)
    return Cost(statistics.median(seconds), statistics.median(statements))


def _objective(rng: random.Random) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        suggest(trial, "tpe", "batchnorm")
        return rng.random()

    return objective


def ours(url: str, name: str, trials: int) -> Cost:
    """The worker's own per-trial code, training left out."""
    storage = open_storage(
        parse_storage_url(url),
        heartbeat_interval=10,
        grace_period=60,
        stale_trial_callback=retry_callback(),
    )
    study = open_study(storage, name, sampler_seed=0)
    worker = Worker(
        study=study,
        options=WorkerOptions(storage_url=parse_storage_url(url), study_name=name),
        say=lambda line: None,
    )
    objective = _objective(random.Random(0))
    counter = StatementCounter(storage.engine)

    def run_one() -> None:
        assert worker.run_one(objective, None)

    return _measure(run_one, counter, trials)


def bare_optuna(url: str, name: str, trials: int) -> Cost:
    """Optuna's own ask and tell on the same study, with the same suggestions."""
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name=name, storage=storage, sampler=TPESampler(seed=1))
    objective = _objective(random.Random(1))
    counter = StatementCounter(storage.engine)

    def run_one() -> None:
        trial = study.ask()
        study.tell(trial, objective(trial))

    return _measure(run_one, counter, trials)


def _tpe_study(url: str, name: str, slots: int) -> float:
    """A TPE study of `slots` queued trials, created as `hpo create` does; its seconds."""
    storage = open_storage(parse_storage_url(url), create=True)
    started = time.perf_counter()
    ensure_queue_index(storage)
    create_study(storage, name, StudyConfig(sampler="tpe", n_trials=slots, dataset="synthetic"))
    return time.perf_counter() - started


def _add_finished(url: str, name: str, count: int) -> None:
    """`count` COMPLETE trials over the seed's TPE ranges, added through Optuna's API."""
    distributions = {
        "learning_rate": FloatDistribution(min(LEARNING_RATES), max(LEARNING_RATES), log=True),
        "batch_size": CategoricalDistribution(BATCH_SIZES),
        "p_dropout": FloatDistribution(min(DROPOUTS), max(DROPOUTS)),
    }
    rng = random.Random(2)
    study = optuna.create_study(study_name=name, storage=url)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={
                    "learning_rate": 10 ** rng.uniform(-3, 0),
                    "batch_size": rng.choice(BATCH_SIZES),
                    "p_dropout": rng.uniform(min(DROPOUTS), max(DROPOUTS)),
                },
                distributions=distributions,
                value=rng.random(),
            )
            for _ in range(count)
        ]
    )


def _pool_worker(url: str, name: str, seconds: float, done: multiprocessing.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as `hpo worker` runs
    storage = open_storage(
        parse_storage_url(url),
        heartbeat_interval=10,
        grace_period=60,
        stale_trial_callback=retry_callback(),
    )
    study: WorkQueueStudy = open_study(storage, name)
    study.sampler = RandomSampler()
    worker = Worker(
        study=study,
        options=WorkerOptions(storage_url=parse_storage_url(url), study_name=name),
        say=lambda line: None,
    )
    objective = _objective(random.Random(os.getpid()))
    deadline = time.monotonic() + seconds
    count = 0
    try:
        while time.monotonic() < deadline and worker.run_one(objective, None):
            count += 1
    except NoWorkLeft:
        pass
    done.put(count)


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks
    return total


def _server_pids(port: int) -> list[int]:
    """The PostgreSQL server listening on `port` and its backends (and their finished children's
    CPU, counted in the parent's cutime/cstime)."""
    postmaster = None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"postgres") and str(port).encode() in command:
                postmaster = int(entry.name)
    if postmaster is None:
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


def ceiling(workers: int, seconds: float) -> tuple[float, float, int]:
    """Trials per second and server CPU (cores busy) with `workers` processes through PgBouncer."""
    from tests.harness.pooled_postgres import pooled_postgres

    with pooled_postgres(max_connections=40, pool_size=20) as cluster:
        url = cluster.pooled_url()
        slots = 200_000
        _tpe_study(cluster.direct_url(), "ceiling", slots)
        context = multiprocessing.get_context("spawn")
        done: multiprocessing.Queue = context.Queue()
        processes = [
            context.Process(target=_pool_worker, args=(url, "ceiling", seconds, done))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        time.sleep(5)  # the workers import and connect; count from here
        pids = _server_pids(cluster.server_port)
        cpu_before, started = _cpu_seconds(pids), time.monotonic()
        with cluster.admin() as admin:
            finished_before = _finished(admin)
            time.sleep(seconds - 6)
            finished_after = _finished(admin)
        wall = time.monotonic() - started
        cpu = _cpu_seconds(_server_pids(cluster.server_port)) - cpu_before
        counts = [done.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        return (finished_after - finished_before) / wall, cpu / wall, sum(counts)


def _finished(admin: psycopg.Connection) -> int:
    row = admin.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on the server at `server` (a SQLAlchemy URL without a database), dropped
    afterwards."""
    base = sqlalchemy.make_url(server)
    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        host=base.host, port=base.port or 5432, user=base.username, dbname="postgres",
        autocommit=True,
    )  # fmt: skip
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@contextmanager
def fresh_mariadb(server: str) -> Iterator[str]:
    """A new database on the MariaDB (or MySQL) server at `server`, dropped afterwards."""
    import pymysql

    base = sqlalchemy.make_url(server)
    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(
        host=base.host, port=base.port or 3306, user=base.username, password=base.password or "",
        autocommit=True,
    )  # fmt: skip
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")
        admin.close()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Prints the table; returns its rows (by study) for the test that runs it small."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows: dict[str, dict[str, float]] = {}
    print(f"# study_scale: PostgreSQL, {os.cpu_count()} CPU cores, optuna {optuna.__version__}")
    print(
        f"{'study':<22}{'create s':>10}{'ours ms':>10}{'ours SQL':>10}"
        f"{'Optuna ms':>11}{'Optuna SQL':>12}{'Optuna/ours':>13}"
    )
    with fresh_database(args.server) as url:
        for kind in ("queued", "finished"):
            for size in sizes:
                name = f"{kind}-{size}"
                if kind == "queued":
                    create_s = _tpe_study(url, name, size)
                    rows[f"create {size}"] = {"seconds": create_s}
                    created = f"{create_s:.2f}"
                else:  # the finished trials first, as a study that ran them would have
                    _add_finished(url, name, size)
                    _tpe_study(url, name, size + FINISHED_QUEUE)
                    created = "–"
                mine = ours(url, name, args.trials)
                theirs = bare_optuna(url, name, args.trials)
                rows[name] = {
                    "ours_s": mine.seconds,
                    "ours_sql": mine.statements,
                    "optuna_s": theirs.seconds,
                    "optuna_sql": theirs.statements,
                }
                print(
                    f"{f'{size:,} {kind}':<22}{created:>10}{1000 * mine.seconds:>10.1f}"
                    f"{mine.statements:>10.0f}{1000 * theirs.seconds:>11.1f}"
                    f"{theirs.statements:>12.0f}{theirs.seconds / mine.seconds:>13.2f}",
                    flush=True,
                )
    if args.mariadb:
        with fresh_mariadb(args.mariadb) as url:
            creates = {size: _tpe_study(url, f"q{size}", size) for size in sizes}
        rows["mariadb create"] = {str(size): seconds for size, seconds in creates.items()}
        listed = ", ".join(f"{size:,} slots {seconds:.2f} s" for size, seconds in creates.items())
        print(f"create on MariaDB: {listed}", flush=True)
    if args.workers:
        rate, cores, total = ceiling(args.workers, args.seconds)
        rows["ceiling"] = {"trials_per_s": rate, "server_cores": cores}
        print(
            f"ceiling: {args.workers} workers through PgBouncer, random sampling: "
            f"{rate:.0f} trials/s, the server busy {cores:.2f} cores ({total} trials in all)"
        )
    return rows


if __name__ == "__main__":
    main()
