"""The README's paths, run as a user would: real `hpo` processes against real databases."""

import contextlib
import json
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.search_space import grid_points
from hpo.trial_figure import curves_artifact_id
from tests.conftest import free_port, run_hpo, start_hpo

SVG = "{http://www.w3.org/2000/svg}"

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
    assert list(export) == EXPORT_KEYS
    study = optuna.load_study(study_name=export["study"], storage=storage_url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: (t.value, t.number))  # ties: the earliest trial
    assert export["trial"] == best.number
    assert export["test_loss"] == best.value
    for key in ("learning_rate", "batch_size", "p_dropout"):
        assert export[key] == best.params[key]
    curves = best.user_attrs["curves"]
    epoch = export["epoch"]
    assert 1 <= epoch <= best.user_attrs["epochs_run"]
    assert curves["test_loss"][epoch - 1] == min(curves["test_loss"]) == export["test_loss"]
    assert export["test_accuracy"] == curves["test_accuracy"][epoch - 1]
    assert 0.0 <= export["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_demo_runs_the_main_job_in_under_three_minutes(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = run_hpo("demo", cwd=tmp_path, timeout=300)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert seconds < 180, f"demo took {seconds:.0f} s"
    trial_lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 16
    export = json.loads((tmp_path / "best.json").read_text())
    assert export["dataset"] == "digits" and export["preset"] == "batchnorm"
    assert export["test_accuracy"] >= 0.95
    assert f"epoch={export['epoch']}" in result.stdout
    check_export_against_study(export, f"sqlite:///{tmp_path / 'hpo.db'}")
    print(f"demo: {seconds:.1f} s, best test accuracy {100 * export['test_accuracy']:.1f}%")


def run_small_grid(storage_url: str, cwd: Path) -> None:
    """A full 128-point grid on small synthetic data, by a real worker process."""
    create = (
        "create",
        "--storage",
        storage_url,
        "--study",
        "grid",
        "--sampler",
        "grid",
        "--dataset",
        "synthetic",
        "--subset",
        "32",
        "--epochs",
        "2",
        "--patience",
        "1",
    )
    created = run_hpo(*create, cwd=cwd)
    assert created.returncode == 0, created.stderr
    again = run_hpo(*create, cwd=cwd)  # the same settings again: a no-op
    assert again.returncode == 0 and "exists with the same settings" in again.stdout

    worker = run_hpo(
        "worker", "--storage", storage_url, "--study", "grid", "--device", "cpu", cwd=cwd
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.strip().splitlines()[-1].startswith("worker done: 128 trials")

    study = optuna.load_study(study_name="grid", storage=storage_url)
    states = Counter(t.state for t in study.trials)
    assert (
        len(study.trials) == 128 and states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 128
    )
    ran = Counter(tuple(sorted(t.params.items())) for t in study.trials)
    assert set(ran) == {tuple(sorted(p.items())) for p in grid_points("batchnorm")}
    assert set(ran.values()) == {1}

    status = run_hpo("status", "--storage", storage_url, "--study", "grid", cwd=cwd)
    assert (
        status.returncode == 0 and "0 waiting" in status.stdout and "best: trial" in status.stdout
    )

    exported = run_hpo("export", "--storage", storage_url, "--study", "grid", cwd=cwd)
    assert exported.returncode == 0, exported.stderr
    check_export_against_study(json.loads(exported.stdout), storage_url)

    # A second worker finds nothing left and says so.
    late = run_hpo(
        "worker", "--storage", storage_url, "--study", "grid", "--device", "cpu", cwd=cwd
    )
    assert late.returncode == 0 and "worker done: 0 trials" in late.stdout


@pytest.mark.slow
def test_small_grid_on_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    run_small_grid(sqlite_url, tmp_path)


@pytest.mark.slow
@pytest.mark.server
def test_small_grid_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    run_small_grid(postgres_url, tmp_path)


@pytest.mark.slow
@pytest.mark.server
def test_small_grid_on_mariadb(tmp_path: Path, mysql_url: str) -> None:
    run_small_grid(mysql_url, tmp_path)


def _figure_points(url: str) -> tuple[str, int, int]:
    """The dashboard figure's trial state (from its title), epochs drawn so far, and lines."""
    with urllib.request.urlopen(url, timeout=10) as answer:
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
    port = free_port()
    worker = start_hpo(
        *("worker", "--storage", url, "--study", "watch", "--device", "cpu"),
        cwd=tmp_path,
        output=False,
    )
    dashboard = start_hpo("dashboard", "--storage", url, "--port", str(port), output=False)
    figure = f"http://127.0.0.1:{port}/artifacts/1/1/{curves_artifact_id(1)}"
    seen: list[tuple[str, int, int]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # dashboard not up yet, or no trial yet
                seen.append(_figure_points(figure))
            if len({points for _, points, _ in seen if points > 1}) >= 3:
                break
            time.sleep(1)
    finally:
        worker.terminate()
        dashboard.terminate()
        worker.wait(timeout=30)
        dashboard.wait(timeout=30)
    # Train and test loss and accuracy (4 lines), with more epochs each time, never fewer.
    growing = [points for state, points, lines in seen if state == "running" and lines == 4]
    assert len(set(growing)) >= 3, seen
    assert growing == sorted(growing), seen
