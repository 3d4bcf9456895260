"""Limits the database server enforces on each of our sessions, so a hung client can't stall others.

A worker that freezes (a hung node, a stopped VM, a network partition) in the middle of a
transaction keeps the row locks that the transaction took: Optuna locks a trial's row to change
its state, and its inserts lock the parent row. Every other worker that pops that trial or fails
it as stale then waits on the lock; on PostgreSQL, until TCP keepalive notices, about two hours by
default. So each session of ours asks the server to end it instead:
- PostgreSQL: `idle_in_transaction_session_timeout` ends a session left idle inside a transaction
  (its transaction is rolled back and its locks go); `lock_timeout` bounds any wait for a lock;
  both are set for each transaction, at its start; the TCP keepalive settings free the connection
  slot of a vanished client in about 90 s;
- MariaDB: `idle_transaction_timeout` and `innodb_lock_wait_timeout` do the same; MySQL has no
  idle-transaction limit, so there `wait_timeout` ends any session idle that long (the pool
  replaces it, `pool_pre_ping`).
A healthy worker's transactions last milliseconds, so the limit, the heartbeat grace period by
default, never touches one. The limits come with every new connection (and, on PostgreSQL, every
transaction), so a worker that reconnects gets them again. Behind PgBouncer in transaction mode
they hold too, and PgBouncer's own `idle_transaction_timeout` ends a frozen client's transaction
at the pooler (RELIABILITY.md).
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy
from sqlalchemy import event

DEFAULT_IDLE_TRANSACTION_S = 60.0  # for commands that are not workers (create, status, dashboard)
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 60, 10, 3


def transaction_settings(dialect: str, idle_transaction_s: float) -> str | None:
    """PostgreSQL: one statement at the start of each transaction, setting its limits for that
    transaction only (`set_config(..., true)`, as SET LOCAL). Set per session, they would leak
    through PgBouncer in transaction mode onto other clients' transactions, such as Optuna's
    schema check at start-up, which idles while it reads its migration scripts. A lock wait may
    take twice the idle limit: a frozen lock holder is ended first, so its waiters get the lock
    instead of an error."""
    if dialect != "postgresql":
        return None
    idle_s = _whole_seconds(idle_transaction_s)
    return (
        f"SELECT set_config('idle_in_transaction_session_timeout', '{idle_s}s', true), "
        f"set_config('lock_timeout', '{2 * idle_s}s', true)"
    )


def session_settings(dialect: str, idle_transaction_s: float, *, mariadb: bool) -> list[str]:
    """The SET statements for one new session."""
    idle_s = _whole_seconds(idle_transaction_s)
    if dialect == "postgresql":
        # Socket settings only: harmless on whichever server connection a pooler runs them.
        return [
            f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S}",
            f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S}",
            f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}",
        ]
    if dialect == "mysql":
        idle_limit = "idle_transaction_timeout" if mariadb else "wait_timeout"
        return [f"SET SESSION {idle_limit} = {idle_s}, innodb_lock_wait_timeout = {2 * idle_s}"]
    return []  # SQLite: one machine, and its busy timeout already bounds a wait


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def limit_sessions(engine: sqlalchemy.Engine, idle_transaction_s: float) -> None:
    """Make every new connection and transaction of `engine` carry the limits, and drop the
    connections made before."""
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "mysql"):
        return

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        mariadb = dialect == "mysql" and "mariadb" in dbapi_connection.get_server_info().lower()
        with dbapi_connection.cursor() as cursor:
            for statement in session_settings(dialect, idle_transaction_s, mariadb=mariadb):
                cursor.execute(statement)
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    per_transaction = transaction_settings(dialect, idle_transaction_s)
    if per_transaction is not None:

        def on_begin(connection: sqlalchemy.Connection) -> None:
            connection.exec_driver_sql(per_transaction)

        event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections opened while the storage was set up lack the limits
