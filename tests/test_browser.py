"""What a person sees, in a real headless Chromium: the report page and optuna-dashboard.

Screenshots go to test-artifacts/ (kept by CI). Chromium comes from Debian's `chromium` package,
which .ci/run installs; on a machine without it these tests skip, except under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.record.curves_artifact import curves_artifact_id
from storage.optuna_internals import trial_id
from tests.helpers import REPO, figure_traces, free_port, start_hpo, table_rows

ARTIFACTS = REPO / "test-artifacts"
DASHBOARD_TOKEN = "browser-test-token"
pytestmark = pytest.mark.slow


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return path


def browse(url: str, screenshot: str, height: int = 1400, check_size: bool = True) -> str:
    """Load `url` with JavaScript, save a screenshot, return the rendered DOM: one Chromium
    start for both (headless Chromium takes --screenshot and --dump-dom together)."""
    ARTIFACTS.mkdir(exist_ok=True)
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=10000",
    ]
    shot = ARTIFACTS / screenshot
    shot.unlink(missing_ok=True)  # the size check below sees this run's file
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [*flags, f"--user-data-dir={profile}", f"--screenshot={shot}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    if check_size:  # a page with content, not a blank one
        assert shot.stat().st_size > 10_000
    return dom


@pytest.fixture(scope="module")
def worker_study(tmp_path_factory) -> str:
    """Two small TPE studies run by a real worker: the seed's final stage and its momentum
    stage, for the single-study and the side-by-side reports."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'b.db'}"
    for name, preset in (("browser-study", "batchnorm"), ("momentum-stage", "momentum")):
        study = ["--storage", url, "--study", name]
        settings = ["--sampler", "tpe", "--n-trials", "3", "--dataset", "synthetic"]
        settings += ["--subset", "64", "--epochs", "6", "--patience", "3", "--preset", preset]
        assert main(["create", *study, *settings]) == 0
        worker = ["--device", "cpu", "--sampler-seed", "0", "--checkpoint-dir", str(folder / "ck")]
        assert main(["worker", *study, *worker]) == 0
    return url


def test_report_renders_its_figures_offline(worker_study: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert (
        main(["report", "--storage", worker_study, "--study", "browser-study", "-o", str(report)])
        == 0
    )
    dom = browse(report.as_uri(), "report.png", height=4000)
    # Plotly draws each figure as SVG once its script has run: no network involved.
    assert dom.count('class="main-svg"') >= 7
    assert "browser-study" in dom


def test_the_side_by_side_report_of_two_studies(worker_study: str, tmp_path: Path) -> None:
    report = tmp_path / "compare.html"
    studies = ["--study", "browser-study", "--study", "momentum-stage"]
    assert main(["report", "--storage", worker_study, *studies, "-o", str(report)]) == 0
    page = report.read_text()
    spent = figure_traces(page, "Best loss found against epochs spent")
    assert [trace["name"] for trace in spent] == ["browser-study", "momentum-stage"]
    rows = {row[0]: row for row in table_rows(page, "compare")}
    for name, trace in zip(("browser-study", "momentum-stage"), spent, strict=True):
        study = optuna.load_study(study_name=name, storage=worker_study)
        finished = [t for t in study.trials if t.state.is_finished()]
        epochs = sum(t.user_attrs["epochs_run"] for t in finished)
        # The curve ends at all the epochs spent, at the study's best; the table says the same.
        assert trace["x"][-1] == epochs and trace["y"][-1] == study.best_value
        assert rows[name][5] == str(epochs) and rows[name][7] == f"{study.best_value:.4g}"
    dom = browse(report.as_uri(), "compare.png", height=1600)
    assert dom.count('class="main-svg"') >= 1 and "momentum-stage" in dom


def test_dashboard_shows_the_study_its_trials_and_a_learning_curve(worker_study: str) -> None:
    """Through the tokenized URL that hpo dashboard prints; a browser without it sees nothing."""
    port = free_port()
    checkpoints = Path(worker_study.removeprefix("sqlite:///")).parent / "ck"
    server = start_hpo(
        *("dashboard", "--storage", worker_study, "--port", str(port)),
        *("--checkpoint-dir", str(checkpoints)),
        env={"HPO_DASHBOARD_TOKEN": DASHBOARD_TOKEN},
    )
    base = f"http://127.0.0.1:{port}"
    token = f"?token={DASHBOARD_TOKEN}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/meta{token}", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        # Each browse is a new browser profile: the token in the URL sets the cookie that the
        # page's own API calls then carry.
        home = browse(f"{base}/dashboard{token}", "dashboard-home.png")
        assert "browser-study" in home
        study = browse(f"{base}/dashboard/studies/1{token}", "dashboard-study.png")
        assert "History" in study
        trials = browse(f"{base}/dashboard/studies/1/trials{token}", "dashboard-trials.png", 1800)
        assert "Trial 0" in trials or "trial 0" in trials.lower()
        assert "Intermediate values" in study or "Intermediate values" in trials
        # The trial's train/test loss and accuracy figure, listed among its artifacts.
        assert 'alt="learning-curves.svg"' in trials
        figure_url = f"{base}/artifacts/1/1/{curves_artifact_id(1)}"
        with urllib.request.urlopen(figure_url + token, timeout=10) as answer:
            assert answer.headers["Content-Type"] == "image/svg+xml"
            assert "Trial 0 (" in answer.read().decode()
        browse(figure_url + token, "dashboard-trial-curves.png", height=400)
        # The best trial's kept weights: listed, and downloaded as the very file kept.
        best = optuna.load_study(study_name="browser-study", storage=worker_study).best_trial
        model_id = best.user_attrs["model_artifact"]
        model_url = f"{base}/artifacts/1/{trial_id(best)}/{model_id}{token}"
        with urllib.request.urlopen(model_url, timeout=10) as answer:
            assert answer.read() == (checkpoints / "models" / model_id).read_bytes()
        first = optuna.load_study(study_name="browser-study", storage=worker_study).trials[0]
        if "model_artifact" in first.user_attrs:  # the page shows trial 0's artifacts
            assert f"trial-0-epoch-{first.user_attrs['best_epoch']}.pt" in trials
        # Another browser, without the token: no study, no trial, no figure.
        for path in ("/dashboard/studies/1/trials", figure_url[len(base) :]):
            dom = browse(f"{base}{path}", "dashboard-no-token.png", check_size=False)
            assert "needs its token" in dom
            assert "browser-study" not in dom and "Trial 0" not in dom
    finally:
        server.terminate()
        server.wait(timeout=10)
