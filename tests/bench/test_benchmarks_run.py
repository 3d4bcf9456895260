"""Every benchmark runs end to end on tiny inputs on the CPU and returns sane numbers.

The GPU runs (`bench/gpu_check.sh`) are short and rare: a benchmark that broke since the last one
would waste one. These runs time nothing that is asserted; the ratios are for BENCHMARKS.md.
"""

import math
import shlex

import pytest

from bench import (
    bookkeeping,
    data_pipeline,
    epoch,
    epoch_profile,
    precision,
    study_scale,
    workers_per_gpu,
)

argv = shlex.split


def test_data_pipeline() -> None:
    result = data_pipeline.main(["--images", "512", "--batch", "64", "--workers", "0"])
    assert result["seed DataLoader+PIL"] > 0 and result["device pipeline"] > 0
    assert result["ratio"] > 0


def test_epoch() -> None:
    rows = epoch.main(
        argv("--images 256 --batches 64 --variants 'none;cuda_graph' --epochs 1 --workers 0")
    )
    assert [row["pipeline"] for row in rows] == ["seed", "none", "cuda_graph"]
    assert all(row["seconds"] > 0 for row in rows)
    assert all(math.isfinite(row["test_loss"]) for row in rows[1:])


def test_epoch_profile() -> None:
    result = epoch_profile.main(["--images", "256", "--batch", "64"])
    assert result["wall"] > 0 and 0 < result["busy"] < 2 * result["wall"]
    assert result["test pass"] > 0


def test_bookkeeping(tmp_path) -> None:
    table = bookkeeping.main(
        argv(f"--storage sqlite:///{tmp_path}/bk.db --epochs 4 --finished 2 --epoch-seconds 0")
    )
    assert table["sqlite"]["ours"] > 0 and table["sqlite"]["optuna defaults"] > 0


def test_precision() -> None:
    # channels_last as the fast path: bf16 without native CPU support (AVX2) is ~20x slower.
    args = ["--dataset", "digits", "--seeds", "2", "--epochs", "2", "--speed", "channels_last"]
    result = precision.main(args)
    assert all(math.isfinite(result[key]) for key in ("loss_diff", "loss_2se", "loss_spread"))


@pytest.mark.slow
def test_workers_per_gpu() -> None:
    rows = workers_per_gpu.main(
        ["--device", "cpu", "--workers", "1", "--seconds", "1", "--images", "256"]
    )
    assert rows[0]["workers"] == 1 and rows[0]["epochs_per_s"] > 0


@pytest.mark.slow
def test_study_scale() -> None:
    """On the local PostgreSQL and MariaDB (as CI has them); without the PgBouncer ceiling."""
    rows = study_scale.main(argv("--sizes 20,60 --trials 2 --workers 0"))
    for name in ("queued-20", "queued-60", "finished-20", "finished-60"):
        assert rows[name]["ours_s"] > 0 and rows[name]["optuna_s"] > 0
        assert rows[name]["ours_sql"] > 0
    # The same statements per trial with 3 times the queue (the queue is read by no statement).
    assert rows["queued-20"]["ours_sql"] == rows["queued-60"]["ours_sql"]
    assert set(rows["mariadb create"]) == {"20", "60"}
