"""The test harness's forked `hpo` processes behave as `subprocess.Popen` ones do: exit status,
signals, separate or joined output, working directory and environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import preloaded
from tests.helpers import run_hpo

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_exit_status_output_directory_and_environment_are_the_callers(tmp_path: Path) -> None:
    fresh = run_hpo("status", "--study", "x", cwd=tmp_path, fresh=True)
    forked = run_hpo("status", "--study", "x", cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert forked.returncode == 2 and "no study database at hpo.db" in forked.stderr
    shown = run_hpo("status", "--study", "x", env={"HPO_STORAGE": "sqlite:///elsewhere.db"})
    assert "elsewhere.db" in shown.stderr


def test_a_signal_ends_it_as_it_would_a_popen(tmp_path: Path) -> None:
    (tmp_path / "sleeps.py").write_text("import time\ntime.sleep(60)\n")
    process = preloaded.start("sleeps", [], cwd=tmp_path, env=ENV)
    process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while _state(process.pid) != "T" and time.monotonic() < deadline:  # stopped, as a hung node
        time.sleep(0.01)
    assert _state(process.pid) == "T"
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.2)
    process.kill()
    assert process.wait(timeout=10) == -signal.SIGKILL and process.poll() == -signal.SIGKILL


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_module_that_raises_exits_1_with_its_traceback(tmp_path: Path) -> None:
    module = tmp_path / "raises.py"
    module.write_text("raise RuntimeError('from the child')\n")
    process = preloaded.start("raises", [], cwd=tmp_path, env=ENV)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 1 and "RuntimeError: from the child" in out
    assert sys.modules.get("raises") is None  # it ran in the child, not here
