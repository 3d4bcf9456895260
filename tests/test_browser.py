"""What a person sees, in a real headless Chromium: the report pages, the stages page and
optuna-dashboard with its learning-curve figure.

Each figure is read off the drawn page (tests/harness/browser.py): every legend entry's colour is
drawn and every drawn colour is in the legend, nothing leaves its axes, titles and ticks sit inside
the figure and clear of the headings, ticks are round, and whole numbers where the quantity is one.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.record.curves_artifact import curves_artifact_id
from hpo.workqueue.optuna_private import trial_id
from model.presets import PRESETS
from tests.harness.browser import browse, render
from tests.helpers import figure_traces, free_port, start_hpo, table_rows

DASHBOARD_TOKEN = "browser-test-token"
pytestmark = pytest.mark.slow

# Axes that count things: their ticks must be whole numbers.
INTEGER_AXES = {
    "trial",
    "trials",
    "epoch",
    "batch size",
    "best epoch",
    "training epochs spent (all finished trials)",
}


@pytest.fixture(scope="module")
def worker_study(tmp_path_factory) -> str:
    """Two small TPE studies run by a real worker: the seed's final stage (with pruned trials
    and a confirmation across seeds) and its momentum stage, for the single-study and the
    side-by-side reports."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'b.db'}"
    studies = {
        # The demo's settings, smaller: the median pruner stops some trials after epoch 5.
        "browser-study": "--dataset digits --n-trials 8 --epochs 8 --pruner median",
        "momentum-stage": "--dataset synthetic --subset 64 --n-trials 3 --epochs 6 "
        "--patience 3 --preset momentum",
    }
    for name, settings in studies.items():
        study = ["--storage", url, "--study", name]
        assert main(["create", *study, "--sampler", "tpe", *settings.split()]) == 0
        worker = ["--device", "cpu", "--sampler-seed", "0", "--checkpoint-dir", str(folder / "ck")]
        assert main(["worker", *study, *worker]) == 0
    # The best two configurations again with two new seeds: the report's confirmation figure.
    confirm = ["--storage", url, "--study", "browser-study", "--top", "2", "--seeds", "2"]
    assert main(["confirm", *confirm]) == 0
    confirmation = ["--storage", url, "--study", "browser-study-confirm", "--device", "cpu"]
    assert main(["worker", *confirmation, "--checkpoint-dir", str(folder / "ck")]) == 0
    return url


def test_the_report_reads_at_a_glance(worker_study: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert (
        main(["report", "--storage", worker_study, "--study", "browser-study", "-o", str(report)])
        == 0
    )
    page = render(report.read_text(), "report.png", height=5400)
    assert page.problems(INTEGER_AXES) == []
    assert [figure.heading.split(":")[0] for figure in page.figures] == [
        "Trials by state and stop reason",
        "Optimization history",
        "Test-loss curves of all trials (best in red)",
        f"Best trial {_study(worker_study).best_trial.number}",
        "Confirmation across seeds (browser-study-confirm)",
        "Hyper-parameter importance",
        "Best test loss by learning rate and batch size",
        "Parallel coordinates",
    ]
    study = _study(worker_study)
    by_state = {
        state: [t for t in study.trials if t.state.name == state]
        for state in ("COMPLETE", "PRUNED")
    }
    assert by_state["PRUNED"], "the study should have pruned trials to show"

    # Every finished trial is a point; the pruned ones in their own (grey) colour.
    history = page.figure("Optimization history")
    points = [mark for mark in history.marks if mark.kind == "point"]
    legend = {entry.name: entry.colours[0] for entry in history.legend}
    assert len(points) == len(by_state["COMPLETE"]) + len(by_state["PRUNED"])
    assert sum(mark.colour == legend["pruned"] for mark in points) == len(by_state["PRUNED"])

    # The best trial: loss and accuracy in two panels, the best epoch marked.
    best = page.figure("Best trial")
    assert len({mark.plot for mark in best.marks}) == 2
    assert f"best epoch {study.best_trial.user_attrs['best_epoch']}" in [
        title.text for title in best.titles
    ]
    assert all(0 <= float(tick) <= 100 for tick in best.ticks_of("accuracy (%)"))

    # The learning-rate axis of the parallel coordinates reads in learning rates.
    rates = [t.params["learning_rate"] for t in by_state["COMPLETE"]]
    parallel = page.figure("Parallel coordinates")
    ticks = [float(tick) for tick in parallel.ticks_of("learning rate (log scale)")]
    assert ticks and all(min(rates) * 0.999 <= tick <= max(rates) * 1.001 for tick in ticks)


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="browser-study", storage=url)


def test_the_stages_page_gives_each_stage_one_colour(tmp_path: Path) -> None:
    out = tmp_path / "stages.html"
    settings = ["--epochs", "3", "--subset", "300", "--device", "cpu", "-o", str(out)]
    assert main(["reproduce", *settings]) == 0
    page = render(out.read_text(), "stages.png", height=900)
    assert page.problems(INTEGER_AXES) == []
    (figure,) = page.figures
    assert [entry.name for entry in figure.legend] == list(PRESETS)
    for entry in figure.legend:
        # Test accuracy, test loss and the dashed train loss, in the stage's colour.
        lines = [mark for mark in figure.marks if mark.kind == "line"]
        own = [mark for mark in lines if mark.colour == entry.colours[0]]
        assert len(own) == 3 and sum(mark.dashed for mark in own) == 1, entry


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
    rendered = render(page, "compare.png", height=1600)
    assert rendered.problems(INTEGER_AXES) == []
    spent_figure = rendered.figure("Best loss found against epochs spent")
    assert [entry.name for entry in spent_figure.legend] == ["browser-study", "momentum-stage"]


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
            svg = answer.read().decode()
        assert "Trial 0 (" in svg
        curves = render(svg, "dashboard-trial-curves.png", height=400)
        assert curves.problems(INTEGER_AXES) == []
        (figure,) = curves.figures
        assert [entry.name for entry in figure.legend] == ["train", "test", "best epoch"]
        assert len({mark.plot for mark in figure.marks}) == 2  # loss and accuracy panels
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
