"""What tests share: running the real `hpo` command line, a free port, and the small grid study
that several tests run end to end with the checks made on it after.

The grid: a real `hpo create`, real `hpo worker` processes, then what a user looks at: every grid
point finished exactly once, `hpo status`, `hpo export` checked against the study, and a late
worker that finds nothing left. The single-worker run is the SQLite end-to-end test; the
eight-worker runs on PostgreSQL and MariaDB (tests/test_reliability.py) make the same checks.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.record.seed_grid import grid_points
from model.hyperparams import Hyperparams
from tests.harness import preloaded

REPO = Path(__file__).resolve().parent.parent
# A search space whose trials do not diverge (tests/steady_space.yaml says why).
STEADY_SPACE = REPO / "tests" / "steady_space.yaml"


@dataclass(kw_only=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _hpo_env(env: dict[str, str] | None) -> dict[str, str]:
    # The caller's HPO_STORAGE must not leak into a test that relies on the default.
    full_env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return full_env


def run_hpo(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    fresh: bool = False,
) -> Completed:
    """Run the real `hpo` command line in a process of its own, as a user would: forked from
    the preloaded server (tests.harness.preloaded), or a new interpreter (`fresh`), for what the
    start of one must show."""
    if fresh:
        result = subprocess.run(
            [sys.executable, "-m", "hpo", *args],
            cwd=cwd or REPO,
            env=_hpo_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Completed(returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
    process = preloaded.start(
        "hpo", list(args), cwd=cwd or REPO, env=_hpo_env(env), separate_stderr=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    assert process.returncode is not None
    return Completed(returncode=process.returncode, stdout=stdout or "", stderr=stderr or "")


def start_hpo(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    output: bool = True,
    launcher: tuple[str, ...] = ("hpo",),
) -> preloaded.PreloadedProcess:
    """Start the real `hpo` command line in a process of its own (forked from the preloaded
    server); stdout and stderr piped together, or dropped. `launcher`: the module that runs it,
    with its own arguments first (tests.harness.freeze_at)."""
    module, *launcher_args = launcher
    return preloaded.start(
        module, [*launcher_args, *args], cwd=cwd or REPO, env=_hpo_env(env), output=output
    )


# A worker's heartbeat and grace for tests of dead and frozen workers: seconds, not minutes.
FAST_HEARTBEAT = ["--heartbeat", "1", "--grace", "3", "--poll", "0.5"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # one core each, for workers sharing the machine's two


def start_worker(storage: str, study: str, cwd: Path, *extra: str) -> preloaded.PreloadedProcess:
    """A CPU `hpo worker` on one thread, with FAST_HEARTBEAT, checkpoints under `cwd`."""
    return start_hpo(
        *("worker", "--storage", storage, "--study", study, "--device", "cpu"),
        *("--checkpoint-dir", str(cwd / "checkpoints"), *FAST_HEARTBEAT, *extra),
        cwd=cwd,
        env=ONE_THREAD,
    )


def finish(workers: list[preloaded.PreloadedProcess], timeout: float = 400) -> list[str]:
    """Each worker's output once it has exited, asserting that it exited 0."""
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=timeout)
        outputs.append(out)
        assert worker.returncode == 0, out[-3000:]
    return outputs


def create_everywhere(url: str, cwd: Path, *settings: tuple[str, ...]) -> list[tuple[int, str]]:
    """Start one `hpo create` of the study `job` per settings at the same moment, as every node
    of a cluster job does; (exit status, output) of each."""
    processes = [
        start_hpo("create", "--storage", url, "--study", "job", *extra, cwd=cwd)
        for extra in settings
    ]
    return [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in processes]


def free_port() -> int:
    """A TCP port nobody listens on, on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EXPORT_KEYS = [
    "study",
    "trial",
    "learning_rate",
    "batch_size",
    "p_dropout",
    "epoch",
    "test_loss",
    "test_accuracy",
    "dataset",
    "preset",
]


def check_export_against_study(export: dict, storage_url: str) -> None:
    """The export names the COMPLETE trial of lowest loss, with that trial's best epoch."""
    assert list(export)[: len(EXPORT_KEYS)] == EXPORT_KEYS  # the contract; reproduction after
    study = optuna.load_study(study_name=export["study"], storage=storage_url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: (t.value, t.number))  # ties: the earliest trial
    assert export["trial"] == best.number
    assert export["test_loss"] == best.value
    for key in ("learning_rate", "batch_size", "p_dropout"):
        assert export[key] == best.params.get(key)  # no p_dropout: a preset without dropout
    curves = best.user_attrs["curves"]
    epoch = export["epoch"]
    assert 1 <= epoch <= best.user_attrs["epochs_run"]
    assert curves["test_loss"][epoch - 1] == min(curves["test_loss"]) == export["test_loss"]
    assert export["test_accuracy"] == curves["test_accuracy"][epoch - 1]
    assert 0.0 <= export["test_accuracy"] <= 1.0


def run_cli(*args: str) -> Completed:
    """The `hpo` command line in this process: for the commands whose own process adds nothing
    to a test but its start-up time."""
    from hpo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Completed(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def create_small_grid(
    storage_url: str, epochs: int, preset: str = "batchnorm", study: str = "grid"
) -> None:
    """The seed's grid (128 points; 16 for a preset without dropout) on 10 synthetic images:
    cheap trials, the real queue."""
    create = (
        *("create", "--storage", storage_url, "--study", study, "--sampler", "grid"),
        *("--dataset", "synthetic", "--subset", "10", "--epochs", str(epochs), "--patience", "1"),
        *("--preset", preset),
    )
    created = run_cli(*create)
    assert created.returncode == 0, created.stderr
    assert f"grid ({len(grid_points(preset))} trials)" in created.stdout, created.stdout
    again = run_cli(*create)  # the same settings again: a no-op
    assert again.returncode == 0 and "exists with the same settings" in again.stdout


def assert_grid_exactly_once(
    storage_url: str, preset: str = "batchnorm", study_name: str = "grid"
) -> None:
    """Every point of the preset's grid (128 with dropout, 16 without) in the study finished
    exactly once, and nothing is left queued or running."""
    grid = set(grid_points(preset))
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    points = Counter(Hyperparams.from_params(t.params) for t in finished)
    duplicates = sum(n - 1 for n in points.values())
    missing = len(grid - set(points))
    print(
        f"grid: {len(finished)} finished trials, {duplicates} duplicates, {missing} missing, "
        f"{len(study.trials) - len(finished)} failed or retried"
    )
    assert (len(finished), duplicates, missing) == (len(grid), 0, 0)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def check_finished_grid(storage_url: str, cwd: Path, preset: str = "batchnorm") -> None:
    """What a user sees of the finished grid: status, export, and a worker with nothing to do
    (a real process: it must exit before it imports torch)."""
    assert_grid_exactly_once(storage_url, preset)
    status = run_cli("status", "--storage", storage_url, "--study", "grid")
    assert (
        status.returncode == 0 and "0 waiting" in status.stdout and "best: trial" in status.stdout
    )
    exported = run_cli("export", "--storage", storage_url, "--study", "grid")
    assert exported.returncode == 0, exported.stderr
    check_export_against_study(json.loads(exported.stdout), storage_url)
    check_kept_models(storage_url, "grid", cwd / "checkpoints" / "models", keep=3)
    worker = ("worker", "--storage", storage_url, "--study", "grid", "--device", "cpu")
    late = run_hpo(*worker, cwd=cwd, fresh=True)
    assert late.returncode == 0 and "worker done: 0 trials" in late.stdout


def check_kept_models(storage_url: str, study_name: str, folder: Path, keep: int) -> None:
    """Exactly the `keep` best complete trials' model files are left, however many workers
    finished trials and pruned at once: the last pruning sees every trial finished."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    complete = sorted(
        study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (t.value, t.number)
    )
    expected = {trial.user_attrs["model_artifact"] for trial in complete[:keep]}
    left = {path.name for path in folder.iterdir() if not path.name.startswith(".")}
    assert left == expected, (len(left), len(expected))


def figure_traces(page: str, section_title: str) -> list[dict]:
    """The data of the first plotly figure of a section, as the page hands it to plotly."""
    after = page.split(f"<h2>{section_title}</h2>")[1]
    start = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", after).end()
    traces, _ = json.JSONDecoder().raw_decode(after[start:])
    return traces


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cells of a table of the page, row by row, header row left out."""
    body = page.split(f"<table id='{table_id}'>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)[1:]
    return [[html.unescape(cell) for cell in re.findall(r"<td>([^<]*)</td>", row)] for row in rows]
