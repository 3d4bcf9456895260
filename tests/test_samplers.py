"""Every sampler runs a study from a search-space file with two real worker processes on
PostgreSQL, within its budget: Optuna's own samplers, each seeded per worker as TPE is."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.record.config import SAMPLERS
from tests.helpers import finish, run_hpo, start_worker

pytestmark = pytest.mark.slow

BUDGET = 4
# Two continuous parameters and a categorical one (CMA-ES samples that one independently).
SPACE = """\
learning_rate: {low: 0.001, high: 0.1, log: true}
momentum: {low: 0.5, high: 0.99}
batch_size: {choices: [8, 16]}
"""
GRID = "learning_rate: {grid: [0.01, 0.1]}\nmomentum: {grid: [0.0, 0.9]}\n"


def test_every_sampler_runs_its_budget_with_two_workers_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "grid.yaml").write_text(GRID)
    common = ["--dataset", "synthetic", "--subset", "16", "--epochs", "1", "--preset", "momentum"]
    for sampler in SAMPLERS:
        budget = [] if sampler == "grid" else ["--n-trials", str(BUDGET)]
        space = "grid.yaml" if sampler == "grid" else "space.yaml"
        created = run_hpo(
            *("create", "--storage", postgres_url, "--study", sampler, "--sampler", sampler),
            *("--space", str(tmp_path / space), *budget, *common),
            cwd=tmp_path,
        )
        assert created.returncode == 0, created.stderr
    workers = [
        start_worker(postgres_url, sampler, tmp_path, "--sampler-seed", str(k))
        for sampler in SAMPLERS
        for k in range(2)
    ]
    outputs = dict(zip([s for s in SAMPLERS for _ in range(2)], finish(workers), strict=True))
    # What Optuna does with a categorical parameter under CMA-ES, said rather than hidden.
    assert "Optuna samples batch_size independently, at random" in outputs["cmaes"]
    assert "independently" not in outputs["tpe"]
    for sampler in SAMPLERS:
        trials = optuna.load_study(study_name=sampler, storage=postgres_url).trials
        assert len(trials) == BUDGET and all(t.state == TrialState.COMPLETE for t in trials)
        for trial in trials:
            assert 0.001 <= trial.params["learning_rate"] <= 0.1, (sampler, trial.params)
            assert 0.0 <= trial.params["momentum"] <= 0.99
        if sampler == "grid":
            points = {(t.params["learning_rate"], t.params["momentum"]) for t in trials}
            assert points == {(0.01, 0.0), (0.01, 0.9), (0.1, 0.0), (0.1, 0.9)}
        else:
            assert {t.params["batch_size"] for t in trials} <= {8, 16}
        if sampler == "qmc":  # trial k took the sequence's point k: none twice
            assert len({tuple(sorted(t.params.items())) for t in trials}) == BUDGET
