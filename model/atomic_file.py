"""Files written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` fills a temporary file in `path`'s folder (so that the rename is atomic),
    which then replaces `path`. On any error the temporary file is removed and `path` is as it
    was. The temporary name is unique, so that writers of one path (workers sharing a checkpoint
    folder) never write into each other's file."""
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
