"""`hpo demo`: the whole service on the embedded defaults (CPU, SQLite, scikit-learn's digits)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpo.cli.options import default_of, positive_int
from hpo.record.config import StudyConfig
from hpo.reports.export import best_export, write_text
from hpo.study.queue import create_study_at
from hpo.study.worker import WorkerOptions, run_worker
from storage import StorageURL

HELP = "a small real study end to end on CPU, SQLite and digits"
TAKES_STORAGE, TAKES_STUDY = True, False

# Sized to finish in about two minutes on 2 slow CPU cores (AVX2, no AVX-512; BENCHMARKS.md):
# the first 5 trials run to the end before the median pruner starts, so `epochs` sets the length.
DEMO_TRIALS = 12
DEMO_EPOCHS = 30


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    storage_url: StorageURL
    study_name: str | None = None
    n_trials: int = DEMO_TRIALS
    epochs: int = DEMO_EPOCHS
    patience: int = 10
    seed: int = 0
    out: Path = Path("best.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def default(name: str) -> object:
        return default_of(DemoOptions, name)

    parser.add_argument("--study", help="study name (default: demo-<date>-<time>)")
    parser.add_argument(
        "--n-trials", type=positive_int, default=default("n_trials"), help="TPE trials to run"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=default("epochs"), help="most epochs a trial runs"
    )
    parser.add_argument("--seed", type=int, default=default("seed"), help="training seed")
    parser.add_argument(
        "-o", "--output", type=Path, default=default("out"), help="where the export goes"
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    run_demo(
        DemoOptions(
            storage_url=storage_url,
            study_name=args.study,
            n_trials=args.n_trials,
            epochs=args.epochs,
            seed=args.seed,
            out=args.output,
        )
    )
    return 0


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> dict[str, object]:
    name = options.study_name or time.strftime("demo-%Y%m%d-%H%M%S")
    config = StudyConfig(
        sampler="tpe",
        dataset="digits",
        epochs=options.epochs,
        patience=options.patience,
        n_trials=options.n_trials,
        pruner="median",
        seed=options.seed,
    )
    storage, created = create_study_at(options.storage_url, name, config)
    say(
        f"demo: {'created' if created else 'continuing'} study {name!r} in "
        f"{options.storage_url.render()}: TPE, {options.n_trials} trials on scikit-learn's digits, "
        f"up to {options.epochs} epochs, patience {options.patience}, CPU"
    )
    run_worker(
        WorkerOptions(
            storage_url=options.storage_url,
            study_name=name,
            device="cpu",
            sampler_seed=options.seed,
        ),
        say=say,
    )
    export = best_export(storage, name)
    write_text(options.out, json.dumps(export, indent=2) + "\n")
    say(
        f"best: trial {export['trial']}, learning_rate={export['learning_rate']:.4g}, "
        f"batch_size={export['batch_size']}, p_dropout={export['p_dropout']:.3f}, "
        f"epoch={export['epoch']}: test loss {export['test_loss']:.4f}, "
        f"accuracy {100 * export['test_accuracy']:.1f}%"
    )
    say(
        f"wrote {options.out}; see the study with: hpo status --study {name}; its page of "
        f"figures: hpo report --study {name}; live in a browser: hpo dashboard; its winner's "
        f"weights: hpo export --study {name} --model best.pt"
    )
    return export
