"""One worker per SQLite database.

SQLite has no row locks: two workers taking queued trials at once collide ("database is locked")
instead of each getting its own. Rather than fail at random, a second worker on the same file is
refused at start, with the way out.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from storage.errors import StorageError
from storage.urls import StorageURL


@contextmanager
def one_worker_per_sqlite_file(url: StorageURL) -> Iterator[None]:
    path = url.sqlite_path
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".worker-lock")
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another worker is already running on {path}: SQLite serves one worker at a "
                "time; use PostgreSQL or MySQL (--storage postgresql+psycopg://…) for several"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
