"""Files written whole or not at all: a temporary file beside the target, then a rename.

A failed write (a full disk, no permission, a read-only file system) raises `OSError` with the
operating system's reason and leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def save_torch_atomically(path: Path, payload: Any) -> None:
    """`torch.save(payload)` to `path`, written whole or not at all. Serialized in memory first,
    then written with the operating system's own calls: PyTorch's writer reports a full disk as
    "enforce fail at inline_container.cc … unexpected pos", where a plain write says "No space
    left on device"."""
    import torch  # here: the command line writes text files through this module without torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    write_atomically(path, lambda partial: _write_bytes(partial, data))


def _write_bytes(path: Path, data: memoryview) -> None:
    # Closing reports what writing could not (NFS flushes at close); no fsync: a checkpoint is
    # written every epoch, and durability across a power loss is not what it is for.
    path.write_bytes(data)
