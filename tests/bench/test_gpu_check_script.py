"""bench/gpu_check.sh, run small on the CPU: every step of a GPU run must at least run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The steps of the default set with commands of their own that a CPU can run: tests and
# workers_mps need CUDA, compile is the epoch step's command with other variants, and
# data_pipeline's one plain command runs in tests/bench/test_benchmarks_run.py.
STEPS = ("profile", "epoch")


@pytest.mark.slow
def test_the_gpu_check_steps_run_on_a_cpu(tmp_path) -> None:
    env = {
        **os.environ,
        # The script calls python3: this interpreter's, with the project installed.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DEVICE": "cpu",
        "IMAGES": "128",
        "BATCHES": "64",
        "EPOCH_VARIANTS": "cuda_graph;bf16,channels_last",
        "STEPS": " ".join(STEPS),
        "OUT": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for name in STEPS:
        assert f"=== {name}: exit 0" in done.stdout, done.stdout[-3000:]
        assert (tmp_path / f"{name}.txt").stat().st_size > 0
    assert "busy" in (tmp_path / "profile.txt").read_text()
