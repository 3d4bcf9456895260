"""`hpo create`: create a study and its queue (a no-op if it exists with the same settings)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.cli.options import default_of, non_negative_int, positive_int
from hpo.record.config import PRUNERS, SAMPLERS, StudyConfig
from hpo.record.space_file import TUNABLE
from model.data_spec import DATASETS
from model.presets import PRESETS

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "create a study (a no-op if it exists with the same settings)"
TAKES_STORAGE, TAKES_STUDY = True, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def default(name: str) -> object:
        return default_of(StudyConfig, name)

    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=default("sampler"),
        help="how trials are chosen: the grid's points, or Optuna's sampler of that name",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default=default("dataset"),
        help="what trials train on (digits and synthetic ship with the project)",
    )
    parser.add_argument(
        "--data-dir", default=default("data_dir"), help="where CIFAR-10 is (or goes)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=default("epochs"), help="most epochs a trial runs"
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=default("patience"),
        help="stop after this many epochs without a lower test loss",
    )
    parser.add_argument(
        "--n-trials", type=positive_int, help="the sampler's budget (trials in all; not for grid)"
    )
    parser.add_argument(
        "--space",
        type=Path,
        help="the search space, a YAML or JSON file: the parameters to tune "
        f"({', '.join(TUNABLE)}), each a range {{low, high, log, step}}, a list of choices, or "
        "grid values (default: the seed's grid or ranges)",
    )
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        default=default("pruner"),
        help="also end hopeless trials early (as PRUNED)",
    )
    parser.add_argument(
        "--seed", type=int, default=default("seed"), help="training seed of every trial"
    )
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=default("preset"),
        help="which of the seed's stages to train",
    )
    parser.add_argument(
        "--subset", type=positive_int, help="use only this many training images (quick checks)"
    )
    parser.add_argument(
        "--validation",
        type=positive_int,
        help="hold this many training images out (per-class balanced, fixed draw) and choose "
        "epochs and the winner on their loss; the test set is then measured for the record only "
        "(default: choose on the test loss, as the seed does)",
    )
    parser.add_argument(
        "--keep-models",
        type=non_negative_int,
        default=default("keep_models"),
        help="keep the best-epoch weights of this many best trials, as artifacts in the "
        "checkpoint folder (0: none)",
    )


# A queue this long takes seconds to write (about 1 s per 10,000 trials): say so first.
ANNOUNCED_QUEUE = 20_000


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.record.space_file import read_space
    from hpo.study.queue import create_study_at

    space = None
    if args.space is not None:
        space = read_space(
            args.space, sampler=args.sampler, has_dropout=PRESETS[args.preset].dropout
        ).to_dict()

    config = StudyConfig(
        sampler=args.sampler,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        patience=args.patience,
        n_trials=args.n_trials,
        pruner=args.pruner,
        seed=args.seed,
        preset=args.preset,
        subset=args.subset,
        validation=args.validation,
        keep_models=args.keep_models,
        space=space,
    )

    def queuing(count: int) -> None:
        if count >= ANNOUNCED_QUEUE:
            print(f"queuing {count:,} trials …", flush=True)

    _, created = create_study_at(storage_url, args.study, config, queuing)
    what = "created" if created else "exists with the same settings:"
    tuned = f" over {', '.join(space)}" if space else ""
    print(
        f"study {args.study!r} {what} {config.sampler}{tuned} "
        f"({config.planned_trials:,} trials) on {config.dataset} in {storage_url.render()}"
    )
    return 0
