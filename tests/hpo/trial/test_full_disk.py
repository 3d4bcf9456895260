"""A full folder, for real (a tmpfs of 64 KiB mounted for the test): a checkpoint that cannot be
written is one warning naming the file, its folder and the operating system's reason, and the
trial goes on; once there is room the checkpoints come back. An export, report or model file
that cannot be written is one `error:` line saying the same. Nothing is left half-written."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hpo.errors import UsageError
from hpo.reports.export import write_text
from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
from model.atomic_file import save_torch_atomically
from model.train import TrainState


def _mount(folder: Path, size: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def small_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a file system of 64 KiB."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = _mount(folder, "64k") if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        why = "not root" if mounted is None else mounted.stderr.strip()
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a small tmpfs under CI=true: {why}")
        pytest.skip(f"cannot mount a small tmpfs: {why}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _state() -> TrainState:
    return TrainState(
        history=[],
        network={"w": torch.ones(64 * 1024)},  # 256 KiB: more than the folder holds
        optimizer={},
        scheduler=None,
        cpu_rng=torch.zeros(1),
        data_rng=torch.zeros(1),
    )


def test_a_checkpoint_on_a_full_disk_is_one_warning_and_training_goes_on(
    small_folder: Path,
) -> None:
    said: list[str] = []
    checkpoints = AsyncCheckpoints(CheckpointStore(small_folder, say=said.append))
    for _ in range(3):  # three epochs' checkpoints, each refused by the disk
        checkpoints.save("s", 7, lambda _buffer: _state())
        checkpoints.flush()  # raises nothing: the trial goes on
    assert len(said) == 1, said
    expected = f"cannot write trial-7.pt in {small_folder / 's'}: No space left on device"
    assert said[0].startswith(f"warning: checkpoint not written: {expected}"), said[0]
    assert not list(small_folder.rglob("*.partial")) and not list(small_folder.rglob("*.pt"))
    # Room again: the next epoch's checkpoint is written, and it says so.
    assert _mount(small_folder, "16m", "remount").returncode == 0
    checkpoints.save("s", 7, lambda _buffer: _state())
    checkpoints.flush()
    assert (small_folder / "s" / "trial-7.pt").is_file()
    assert said[1] == f"checkpoints written again in {small_folder}"
    assert CheckpointStore(small_folder).load("s", 7) is not None


def test_an_export_or_model_file_on_a_full_disk_is_one_line_and_leaves_nothing(
    small_folder: Path,
) -> None:
    with pytest.raises(OSError) as full:
        save_torch_atomically(small_folder / "model.pt", _state().network)
    assert full.value.strerror == "No space left on device"
    (small_folder / "filler").write_bytes(b"x" * 60 * 1024)
    with pytest.raises(UsageError) as refused:
        write_text(small_folder / "best.json", "{}" * 4096)
    assert str(refused.value) == (
        f"cannot write best.json in {small_folder}: No space left on device"
    )
    assert sorted(p.name for p in small_folder.iterdir()) == ["filler"]
