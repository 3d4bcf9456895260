"""Run the `hpo` command line, and freeze the whole process (SIGSTOP) at one chosen moment.

    python -m tests.harness.freeze_at PATTERN N hpo-arguments...

The process stops itself right after the N-th SQL statement that matches the regular expression
PATTERN (case-insensitive) and ran inside a database transaction: the moment a hung node, a
stopped VM or a network partition leaves its transaction open with the rows it wrote still
locked. PATTERN `-` freezes outside any transaction: after the N-th time a connection went back
to the pool (its transaction committed or rolled back). PATTERN `after:REGEX` waits for the
transaction of the N-th matching statement to end and fires as its connection goes back to the
pool: between transactions at a known point (after a trial's first report: mid-training).
Every thread stops, as on a real hung node; the test later sends SIGCONT or SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import event


def freeze() -> None:
    print(f"freeze_at: stopping pid {os.getpid()}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


def install(pattern: str, occurrence: int, action: Callable[[], None] = freeze) -> None:
    """Call `action` at the moment (the module's docstring)."""
    after_commit = pattern.startswith("after:")
    pattern = pattern.removeprefix("after:")
    matcher = None if pattern == "-" else re.compile(pattern, re.IGNORECASE)
    seen = 0
    armed = False  # `after:`: the matching statement ran; fire when its connection is back

    def after_execute(conn: sqlalchemy.Connection, _c: Any, statement: str, *_: Any) -> None:
        nonlocal seen, armed
        if matcher is None or not conn.in_transaction() or not matcher.search(statement):
            return
        seen += 1
        if seen == occurrence:
            if after_commit:
                armed = True
            else:
                action()

    def after_checkin(*_: Any) -> None:
        nonlocal seen, armed
        if armed:
            armed = False
            action()
        if matcher is not None:
            return
        seen += 1
        if seen == occurrence:
            action()

    event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", after_execute)
    event.listen(sqlalchemy.pool.Pool, "checkin", after_checkin)


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    from hpo.cli import main

    sys.exit(main(sys.argv[3:]))
