"""Benchmark: which sampler finds the best configuration for fewer training epochs.

    python -m bench.samplers [--server URL] [--seeds 3] [--trials 16] [--workers 4]
                             [--report samplers.html]

A small real task where the parameters matter: the seed's momentum stage on scikit-learn's
digits (a 1,000-image training subset, up to 8 epochs, patience 3), tuning two continuous
parameters, the learning rate (log scale, 0.001 to 1) and the SGD momentum (0 to 0.99). First the
full grid over the same ranges (8 learning rates × 6 momenta, 48 points) gives the best loss to
reach. Then each sampler runs `--trials` trials, once per sampler seed, each study with
`--workers` workers (`hpo launch --cpu N`) on PostgreSQL (a fresh database, dropped afterwards).

Printed side by side, per sampler, over its seeds: the best test loss after a third, two thirds
and all of the trials (median, and the range from the best to the worst seed), and the training
epochs every trial spent (in the order they finished) until the study's best came within
MARGIN of the grid's best (median over seeds; how many seeds got there), and how many trials
repeated a point that an earlier trial of the same study had (all seeds together).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from bench.study_scale import fresh_database
from hpo.reports.comparison import Spending, spending

MARGIN = 0.05  # "found it": a best loss within 5% of the full grid's
SAMPLERS = ("tpe", "gp", "cmaes", "random", "qmc")
SPACE = """\
learning_rate: {low: 0.001, high: 1.0, log: true}
momentum: {low: 0.0, high: 0.99}
"""
GRID = """\
learning_rate: {grid: [0.001, 0.00268, 0.00720, 0.0193, 0.0518, 0.139, 0.373, 1.0]}
momentum: {grid: [0.0, 0.2, 0.4, 0.6, 0.8, 0.99]}
"""
TASK = ("--dataset", "digits", "--subset", "1000", "--epochs", "8", "--patience", "3")
TASK += ("--preset", "momentum", "--pruner", "none", "--keep-models", "0")


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "HPO_STORAGE": url, "OMP_NUM_THREADS": "1"}


def _hpo(*args: str, cwd: Path, url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hpo", *args], cwd=cwd, env=_env(url), capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"hpo {' '.join(args)} failed: {result.stderr.strip()[-500:]}")


def run_study(name: str, sampler: str, space: Path, trials: int | None, workers: int,
              seed: int, cwd: Path, url: str) -> float:  # fmt: skip
    """Create one study and run it with `workers` worker processes, worker k with sampler seed
    `workers * seed + k` (workers that share a seed propose the same points); its wall
    seconds."""
    budget = ["--n-trials", str(trials)] if trials else []
    # QMC's sequence is the study's, scrambled with the study's seed: seed s gets its own
    # sequence through `hpo create --seed s`, which also seeds the training (0 for the others).
    study_seed = ["--seed", str(seed)] if sampler == "qmc" else []
    _hpo("create", "--study", name, "--sampler", sampler, "--space", str(space), *budget, *TASK,
         *study_seed, cwd=cwd, url=url)  # fmt: skip
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpo",
                "worker",
                "--study",
                name,
                "--device",
                "cpu",
                "--sampler-seed",
                str(workers * seed + k),
                "--checkpoint-dir",
                str(cwd / "ck"),
            ],
            cwd=cwd,
            env=_env(url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker of {name} failed: {err.strip()[-500:]}")
    return time.perf_counter() - started


def _best_after(spent: Spending, fraction: float) -> float:
    index = max(1, round(len(spent.best) * fraction)) - 1
    best = spent.best[index]
    return float("inf") if best is None else best


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--report", type=Path, help="also write hpo report of seed 0's studies")
    args = parser.parse_args(argv)
    samplers = args.samplers.split(",")
    rows: dict[str, dict[str, float]] = {}
    with fresh_database(args.server) as url, tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "space.yaml").write_text(SPACE)
        (cwd / "grid.yaml").write_text(GRID)
        seconds = run_study("grid", "grid", cwd / "grid.yaml", None, args.workers, 0, cwd, url)
        grid = optuna.load_study(study_name="grid", storage=url)
        target = grid.best_value * (1 + MARGIN)
        grid_spent = spending(grid.trials)
        print(
            f"# samplers: digits, 1,000 training images, up to 8 epochs, {args.workers} workers on "
            f"PostgreSQL, {os.cpu_count()} CPU cores, optuna {optuna.__version__}\n"
            f"grid (48 points): best test loss {grid.best_value:.4f} "
            f"(lr {grid.best_params['learning_rate']}, momentum {grid.best_params['momentum']}),"
            f" {grid_spent.epochs[-1]} epochs, {seconds:.0f} s; target: within {MARGIN:.0%}, "
            f"{target:.4f}, reached by the grid after {grid_spent.epochs_to_reach(target)} epochs",
            flush=True,
        )
        third = max(1, args.trials // 3)
        print(
            f"{'sampler':<8}{f'best after {third}':>28}{f'after {2 * third}':>28}"
            f"{f'after {args.trials}':>28}{'epochs to target':>20}{'repeats':>10}"
        )
        for sampler in samplers:
            bests: dict[float, list[float]] = {1 / 3: [], 2 / 3: [], 1.0: []}
            reached: list[int] = []
            repeats = 0
            for seed in range(args.seeds):
                name = f"{sampler}-{seed}"
                run_study(name, sampler, cwd / "space.yaml", args.trials, args.workers, seed,
                          cwd, url)  # fmt: skip
                trials = optuna.load_study(study_name=name, storage=url).trials
                spent = spending(trials)
                # Points proposed twice in one study (workers proposing at the same moment).
                points = [tuple(sorted(t.params.items())) for t in trials if t.params]
                repeats += len(points) - len(set(points))
                for fraction, values in bests.items():
                    values.append(_best_after(spent, fraction))
                epochs = spent.epochs_to_reach(target)
                if epochs is not None:
                    reached.append(epochs)
            to_target = (
                f"{statistics.median(reached):.0f} ({len(reached)}/{args.seeds} seeds)"
                if reached
                else f"never (0/{args.seeds})"
            )
            print(
                f"{sampler:<8}"
                + "".join(f"{_spread(values):>28}" for values in bests.values())
                + f"{to_target:>20}{repeats:>10}",
                flush=True,
            )
            rows[sampler] = {
                "best": statistics.median(bests[1.0]),
                "reached": len(reached),
                "epochs_to_target": statistics.median(reached) if reached else float("nan"),
                "repeats": repeats,
            }
        if args.report is not None:
            studies = [
                arg for s in ["grid", *(f"{x}-0" for x in samplers)] for arg in ("--study", s)
            ]
            _hpo("report", *studies, "-o", str(args.report.resolve()), cwd=cwd, url=url)
            print(f"wrote {args.report}")
    return rows


if __name__ == "__main__":
    main()
