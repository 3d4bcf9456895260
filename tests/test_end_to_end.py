"""The README's paths, run as a user would: real `hpo` processes against real databases."""

import contextlib
import json
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest

from hpo.cli.demo import DEMO_TRIALS
from hpo.record.curves_artifact import curves_artifact_id
from hpo.workqueue.optuna_private import trial_id
from storage import open_storage, parse_storage_url
from tests.helpers import (
    check_export_against_study,
    check_finished_grid,
    create_small_grid,
    free_port,
    run_hpo,
    start_hpo,
)

SVG = "{http://www.w3.org/2000/svg}"
DASHBOARD_TOKEN = "end-to-end"


@pytest.mark.slow
def test_demo_runs_the_main_job(tmp_path: Path) -> None:
    # How long it takes is measured alone on the machine, in BENCHMARKS.md §7: here it shares
    # the cores with the other test process.
    started = time.perf_counter()
    result = run_hpo("demo", cwd=tmp_path, timeout=600)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    trial_lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == DEMO_TRIALS
    export = json.loads((tmp_path / "best.json").read_text())
    assert export["dataset"] == "digits" and export["preset"] == "batchnorm"
    assert export["test_accuracy"] >= 0.95
    assert f"epoch={export['epoch']}" in result.stdout
    # Where to look next: the status, the page of figures, the live dashboard, the weights.
    last = result.stdout.strip().splitlines()[-1]
    assert all(f"hpo {c}" in last for c in ("status", "report", "dashboard", "export")), last
    check_export_against_study(export, f"sqlite:///{tmp_path / 'hpo.db'}")
    print(f"demo: {seconds:.1f} s, best test accuracy {100 * export['test_accuracy']:.1f}%")


@pytest.mark.slow
def test_small_grid_on_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    """The whole grid of a preset without dropout (16 points) by one real worker; on PostgreSQL
    and MariaDB eight workers run the 128-point grid (tests/test_reliability.py) and the same
    checks follow."""
    create_small_grid(sqlite_url, epochs=2, preset="momentum")
    worker = run_hpo(
        "worker", "--storage", sqlite_url, "--study", "grid", "--device", "cpu", cwd=tmp_path
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.strip().splitlines()[-1].startswith("worker done: 16 trials")
    assert len(optuna.load_study(study_name="grid", storage=sqlite_url).trials) == 16
    check_finished_grid(sqlite_url, tmp_path, preset="momentum")


def _figure_points(url: str) -> tuple[str, int, int]:
    """The dashboard figure's trial state (from its title), epochs drawn so far, and lines."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {DASHBOARD_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        svg = answer.read().decode()
    state = svg.split("(", 1)[1].split(")", 1)[0]
    lines = [element for element in ET.fromstring(svg).iter(f"{SVG}polyline")]
    return state, len(lines[0].get("points").split()) if lines else 0, len(lines)


@pytest.mark.slow
def test_the_dashboard_figure_of_a_running_trial_grows_as_epochs_finish(tmp_path: Path) -> None:
    """A worker process trains; the dashboard process draws its figure from the database."""
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    created = run_hpo(
        *("create", "--storage", url, "--study", "watch", "--sampler", "tpe", "--n-trials", "1"),
        *("--dataset", "synthetic", "--subset", "1000", "--epochs", "500", "--patience", "500"),
    )
    assert created.returncode == 0, created.stderr
    # A learning rate that cannot diverge (TPE could draw 1.0, which ends the trial at once):
    # queue that point and take the empty budget slot out of the queue, with Optuna's public API.
    study = optuna.load_study(study_name="watch", storage=url)
    (slot,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    open_storage(parse_storage_url(url)).set_trial_state_values(
        trial_id(slot), optuna.trial.TrialState.FAIL
    )
    (watched,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    port = free_port()
    worker = start_hpo(
        *("worker", "--storage", url, "--study", "watch", "--device", "cpu"),
        cwd=tmp_path,
        output=False,
    )
    dashboard = start_hpo(
        *("dashboard", "--storage", url, "--port", str(port)),
        env={"HPO_DASHBOARD_TOKEN": DASHBOARD_TOKEN},
        output=False,
    )
    figure = f"http://127.0.0.1:{port}/artifacts/1/{trial_id(watched)}/"
    figure += curves_artifact_id(trial_id(watched))
    seen: list[tuple[str, int, int]] = []

    def growing() -> list[int]:
        # Train and test loss and accuracy (4 lines) of the running trial, epochs drawn so far.
        return [points for state, points, lines in seen if state == "running" and lines == 4]

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # dashboard not up yet, or no trial yet
                seen.append(_figure_points(figure))
            # Stop on what the assertions count: another kind of figure must not end the wait.
            if len(set(growing())) >= 3:
                break
            time.sleep(0.3)
    finally:
        worker.terminate()
        dashboard.terminate()
        worker.wait(timeout=30)
        dashboard.wait(timeout=30)
    # More epochs each time, never fewer.
    assert len(set(growing())) >= 3, seen
    assert growing() == sorted(growing()), seen
