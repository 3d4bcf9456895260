"""`hpo confirm`: the top configurations retrained with new seeds by real worker processes in
parallel, the statistics they give, and the export and report that follow them."""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import Counter
from pathlib import Path

import optuna
import pandas
import pytest
from optuna.trial import TrialState

from hpo.confirm.statistics import difference_interval, mean_interval
from tests.helpers import figure_traces, run_cli, start_hpo


def test_mean_interval_is_students_t() -> None:
    interval = mean_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2 df) = 4.3027: 2 ± 4.3027 / sqrt(3)
    assert interval.mean == 2.0
    assert interval.high - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_interval([5.0]).low)
    # Cut to what the quantity can take: no loss below 0, no accuracy above 100%.
    losses = mean_interval([0.01, 0.09], (0.0, math.inf))
    assert losses.low == 0.0 and losses.high > 0.09
    accuracy = mean_interval([97.0, 99.9], (0.0, 100.0))
    assert accuracy.high == 100.0 and accuracy.low < 97.0


def test_welch_difference_interval() -> None:
    leader, runner_up = [1.0, 1.1, 0.9, 1.0], [2.0, 2.3, 1.7, 2.0]
    difference = difference_interval(leader, runner_up)
    # Welch: se² = 0.00667/4 + 0.06/4; df = 3.63; t(0.975, 3.63) = 2.8805 (scipy)
    a, b = statistics.variance(leader) / 4, statistics.variance(runner_up) / 4
    assert difference.mean == pytest.approx(1.0)
    assert difference.high - 1.0 == pytest.approx(2.8805 * math.sqrt(a + b), rel=1e-3)
    assert difference.low > 0  # distinguishable
    overlapping = difference_interval([1.0, 1.5, 0.5], [1.1, 1.6, 0.6])
    assert overlapping.low < 0 < overlapping.high


@pytest.mark.slow
def test_confirm_with_real_workers_then_export_and_report(postgres_url: str, tmp_path: Path):
    url, study = postgres_url, ["--storage", postgres_url, "--study", "s"]
    created = run_cli(
        *("create", *study, "--sampler", "tpe", "--n-trials", "4", "--dataset", "digits"),
        *("--epochs", "5", "--subset", "500"),
    )
    assert created.returncode == 0, created.stderr
    checkpoints = ("--checkpoint-dir", str(tmp_path))
    ran = run_cli("worker", *study, "--device", "cpu", "--sampler-seed", "1", *checkpoints)
    assert ran.returncode == 0, ran.stderr
    queued = run_cli("confirm", *study, "--top", "2", "--seeds", "3")
    assert queued.returncode == 0, queued.stderr
    assert "0 of 6 runs finished" in queued.stdout
    assert "hpo worker --study s-confirm" in queued.stdout

    # Two real workers share the confirmation study, as on two GPUs.
    workers = [
        start_hpo(
            *("worker", "--storage", url, "--study", "s-confirm", "--device", "cpu"),
            *checkpoints,
            cwd=tmp_path,
            env={"OMP_NUM_THREADS": "1"},  # two processes on two cores: no spinning threads
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    searched = optuna.load_study(study_name="s", storage=url)
    leaders = sorted(searched.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)[:2]
    confirming = optuna.load_study(study_name="s-confirm", storage=url).trials
    ended = [t for t in confirming if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    runs = Counter((t.user_attrs["confirms_trial"], t.user_attrs["seed"]) for t in ended)
    # Each of the 2 × 3 (configuration, seed) pairs ran exactly once, with its configuration.
    assert runs == Counter({(t.number, seed): 1 for t in leaders for seed in (1, 2, 3)})
    for trial in ended:
        assert trial.params == searched.trials[trial.user_attrs["confirms_trial"]].params
    # New seeds train differently from the search's run (seed 0) of the same configuration.
    assert all(t.value != searched.trials[t.user_attrs["confirms_trial"]].value for t in ended)

    summary = run_cli("confirm", *study)
    assert summary.returncode == 0, summary.stderr
    assert "6 of 6 runs finished" in summary.stdout and "leader: trial" in summary.stdout
    status = run_cli("status", *study)
    assert "confirmation: study 's-confirm', 6 of 6 runs finished; leader: trial" in status.stdout
    by_config = {
        t.number: [e for e in ended if e.user_attrs["confirms_trial"] == t.number] for t in leaders
    }
    means = {n: statistics.fmean(e.value for e in runs) for n, runs in by_config.items()}
    leader = min(means, key=means.get)

    out = tmp_path / "best.json"
    assert run_cli("export", *study, "-o", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert exported["chosen_by"].startswith("confirmed: lowest mean test loss of the top 2")
    assert exported["trial"] == leader
    assert exported["test_loss"] == pytest.approx(means[leader], rel=1e-12)
    epochs = [e.user_attrs["best_epoch"] for e in by_config[leader]]
    assert exported["epoch"] == max(1, round(statistics.fmean(epochs)))
    assert exported["confirmation"]["seeds"] == [1, 2, 3]
    low, high = exported["confirmation"]["test_loss_ci95"]
    assert low < exported["test_loss"] < high

    page = tmp_path / "report.html"
    assert run_cli("report", *study, "-o", str(page)).returncode == 0
    text = page.read_text()
    seeds, mean, search = figure_traces(text, html.escape("Confirmation across seeds (s-confirm)"))
    assert sorted(seeds["y"]) == sorted(e.value for e in ended)
    assert mean["y"][0] == pytest.approx(means[leader], rel=1e-12)
    assert search["y"][0] == searched.trials[leader].value

    again = run_cli("confirm", *study, "--seeds", "4")
    assert again.returncode == 2 and "was confirmed already with --top 2 --seeds 3" in again.stderr


def _finished_study(url: str, values: list[float]) -> None:
    """An hpo study whose queued trials ended with these values (no training: the confirmation
    only reads them)."""
    create = ("create", "--storage", url, "--study", "f", "--sampler", "tpe", "--dataset")
    assert run_cli(*create, "digits", "--n-trials", str(len(values))).returncode == 0
    study = optuna.load_study(study_name="f", storage=url)
    for value in values:
        trial = study.ask()  # takes the next queued trial
        trial.suggest_float("learning_rate", 0.001, 1.0, log=True)
        trial.suggest_categorical("batch_size", (64, 128, 256, 512))
        trial.suggest_float("p_dropout", 0.2, 0.9)
        trial.set_user_attr("best_epoch", 3)
        trial.set_user_attr("test_accuracy", 0.9)
        study.tell(trial, value)


def test_confirm_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    _finished_study(url, [0.5, 0.4])
    for args, message in (
        (("--study", "f", "--top", "3"), "has 2 complete trials; --top 3 needs as many"),
        (("--study", "nope"), "no study named 'nope'"),
        (("--study", "f", "--seeds", "0"), "expected a positive integer"),
    ):
        refused = run_cli("confirm", "--storage", url, *args)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert message in refused.stderr, refused.stderr
    # A study that happens to have the companion's name is not taken for it.
    other = ("create", "--storage", url, "--study", "f-confirm", "--sampler", "tpe")
    assert run_cli(*other, "--n-trials", "1").returncode == 0
    clash = run_cli("confirm", "--storage", url, "--study", "f", "--top", "2", "--seeds", "2")
    assert clash.returncode == 2 and "exists and is not the confirmation of 'f'" in clash.stderr


def test_the_confirmation_queue_holds_each_configuration_and_seed_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    _finished_study(url, [0.5, 0.3, 0.4])
    confirm = ("confirm", "--storage", url, "--study", "f", "--top", "2", "--seeds", "2")
    assert run_cli(*confirm).returncode == 0
    again = run_cli(*confirm)  # the same plan again: nothing more queued
    assert again.returncode == 0 and "queued" not in again.stdout
    queued = optuna.load_study(study_name="f-confirm", storage=url).trials
    pairs = sorted((t.user_attrs["confirms_trial"], t.user_attrs["seed"]) for t in queued)
    assert pairs == [(1, 1), (1, 2), (2, 1), (2, 2)]  # trials 1 and 2 (0.3, 0.4), seeds 1 and 2
    table = tmp_path / "t.csv"
    exported_all = run_cli(
        "export", "--storage", url, "--study", "f-confirm", "--all", "-o", str(table)
    )
    assert exported_all.returncode == 0, exported_all.stderr
    rows = pandas.read_csv(table)
    assert sorted(zip(rows["confirms_trial"], rows["seed"], strict=True)) == pairs
    # Before any run has finished, the export is still the search's best, and says why.
    exported = json.loads(run_cli("export", "--storage", url, "--study", "f").stdout)
    assert exported["trial"] == 1 and "0 of 4 runs finished" in exported["chosen_by"]
