"""Benchmark 4: per-epoch bookkeeping cost, Optuna's defaults vs ours, on SQLite and PostgreSQL.

    python -m bench.bookkeeping [--storage URL ...] [--epochs 60] [--finished 127]

The study first gets `--finished` completed trials of `--epochs` reports each (a grid mid-way).
Then one trial is timed per epoch:
- Optuna's defaults: `report` + `should_prune` with the default MedianPruner (which reads every
  trial of the study) + the epoch curves saved as a user attr + `torch.save` of the training
  state (the checkpoint a crash-safe script needs), as a plain objective would do;
- ours: `EpochBook.on_epoch`: the report and the curves handed to the trial's background writer
  (hpo/trial/writer.py), the patience pruner asked with the values the book holds (no read) +
  the state copied to host memory and handed to the background checkpoint writer.
The training state is the real one of the seed CNN (final preset): about 10 MB. Between two
epochs the benchmark sleeps for `--epoch-seconds` (the training, not timed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import torch

from bench.timing import cifar_pipeline, synthetic_images
from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
from hpo.trial.epoch_book import build_pruner
from hpo.trial.objective import EpochBook
from hpo.trial.writer import TrialWriter
from hpo.workqueue.optuna_private import trial_id
from model.hyperparams import Hyperparams
from model.presets import PRESETS
from model.train import EpochMetrics, TrainConfig, Training
from storage import open_storage, parse_storage_url


def _training() -> Training:
    pipeline = cifar_pipeline(synthetic_images(64, 16), torch.device("cpu"))
    config = TrainConfig(
        hyperparams=Hyperparams(learning_rate=0.01, batch_size=32, p_dropout=0.5),
        max_epochs=1,
        preset=PRESETS["batchnorm"],
    )
    run = Training(config, pipeline, 10)
    for _ in run.epochs():
        pass
    return run


def _metrics(epoch: int) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        train_loss=1.0 / epoch,
        train_accuracy=0.5,
        test_loss=2.0 / epoch,
        test_accuracy=0.6,
        test_top5=0.9,
        learning_rate=0.01,
        seconds=0.5,
    )


def _fill(study: optuna.Study, finished: int, epochs: int) -> None:
    for _ in range(finished):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
        for epoch in range(1, epochs + 1):
            trial.report(2.0 / epoch, epoch)
        study.tell(trial, 2.0 / epochs)


def measure(url: str, finished: int, epochs: int, epoch_seconds: float) -> dict[str, float]:
    storage = open_storage(parse_storage_url(url), create=True)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    default = optuna.create_study(storage=storage, study_name=name)  # MedianPruner by default
    _fill(default, finished, epochs)
    ours = optuna.load_study(
        study_name=name, storage=storage, pruner=build_pruner("none", 10, epochs)
    )
    results = {}
    run = _training()
    folder = Path(tempfile.mkdtemp())
    checkpoints = AsyncCheckpoints(CheckpointStore(folder))

    def optuna_defaults(trial: optuna.Trial, epoch: int, curves: list[float]) -> None:
        trial.report(2.0 / epoch, epoch)
        trial.should_prune()
        curves.append(2.0 / epoch)
        trial.set_user_attr("curves", {"test_loss": curves})
        torch.save(run.state(), folder / "plain.pt")

    for label, study in (("optuna defaults", default), ("ours", ours)):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
        writer = TrialWriter(storage, trial_id(trial)) if label == "ours" else None
        book = EpochBook(trial=trial, patience=10_000, max_epochs=10_000, writer=writer)
        curves: list[float] = []
        costs = []
        saves = []  # ours: the checkpoint part (state copy, writer thread started)
        bests = []  # ours: the copy of the weights that an epoch with a new best loss makes
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_seconds)  # the epoch's training, during which a write can finish
            if label == "ours":
                book.history.add(_metrics(epoch))  # the training loop's, as in `Training.epochs`
            started = time.perf_counter()
            if label == "ours":  # in the order of hpo.trial.objective.Objective._train
                run.keep_weights_as_best()  # as if every epoch were a new best
                bests.append(time.perf_counter() - started)
                checkpoints.save(name, trial.number, run.state)
                saves.append(time.perf_counter() - started - bests[-1])
                book.on_epoch()
            else:
                optuna_defaults(trial, epoch, curves)
            costs.append(time.perf_counter() - started)
        checkpoints.flush()
        if writer is not None:
            writer.close()
        study.tell(trial, 0.0)
        results[label] = statistics.median(costs) * 1000
        if saves:
            results["ours: checkpoint"] = statistics.median(saves) * 1000
            results["ours: best weights"] = statistics.median(bests) * 1000
    optuna.delete_study(study_name=name, storage=storage)
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--storage",
        action="append",
        help="storage URL (repeatable; default: a SQLite file in /tmp)",
    )
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--finished", type=int, default=127)
    parser.add_argument(
        "--epoch-seconds",
        type=float,
        default=0.3,
        help="time between two epochs' bookkeeping (0.3: an H200 epoch)",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    urls = args.storage or [f"sqlite:////tmp/hpo-bench-{uuid.uuid4().hex[:8]}.db"]
    print(
        f"# per-epoch bookkeeping, median ms over {args.epochs} epochs, study with "
        f"{args.finished} finished trials of {args.epochs} reports"
    )
    print(
        f"{'storage':<14}{'optuna defaults':>17}{'ours':>9}{'ratio':>8}   of which checkpoint"
        "  and best weights"
    )
    table = {}
    for url in urls:
        results = measure(url, args.finished, args.epochs, args.epoch_seconds)
        dialect = url.split(":")[0].split("+")[0]
        ratio = results["optuna defaults"] / results["ours"]
        print(
            f"{dialect:<14}{results['optuna defaults']:>15.2f}ms{results['ours']:>7.2f}ms"
            f"{ratio:>7.1f}x{results['ours: checkpoint']:>14.2f}ms"
            f"{results['ours: best weights']:>16.2f}ms"
        )
        table[dialect] = {**results, "ratio": ratio}
    return table


if __name__ == "__main__":
    main()
