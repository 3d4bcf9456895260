"""Errors the user sees as one line, and the one wording of each kind of them."""

from __future__ import annotations

import os
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user: printed as one `error: …` line, exit status 2."""


def check_folder_exists(path: Path) -> None:
    """A UsageError before any work when the file `path` could not be written: its folder is
    missing."""
    if not path.parent.resolve().is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")


def cannot_write(path: Path, error: OSError) -> str:
    """One line naming the file, its folder and the operating system's reason: "cannot write
    best.json in /shared/out: No space left on device"."""
    reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    return f"cannot write {path.name} in {path.parent}: {reason}"
