"""`hpo reproduce`: the seed's six stages with one seed, as a table and curves."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.cli.options import add_device_option, default_of, positive_int
from hpo.errors import check_folder_exists
from hpo.study.worker import WorkerOptions
from model.data_spec import DATASETS

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "the seed's six stages with one seed: table and curves"
TAKES_STORAGE, TAKES_STUDY = False, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Options not given are left out, so that ReproduceOptions' defaults apply (its module
    # brings torch, which the command line does not import before it runs a command).
    parser.add_argument(
        "--dataset", choices=DATASETS, help="what the stages train on (default: digits)"
    )
    parser.add_argument("--data-dir", help="where CIFAR-10 is (or goes) (default: data)")
    parser.add_argument("--epochs", type=positive_int, help="epochs per stage (default: 30)")
    parser.add_argument(
        "--learning-rate", type=float, help="the stages' learning rate (default: the seed's 0.1)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="the stages' batch size (default: the seed's 128)"
    )
    parser.add_argument("--seed", type=int, help="the one seed of every stage (default: 0)")
    parser.add_argument("--subset", type=positive_int, help="only this many training images")
    add_device_option(parser)
    parser.add_argument(
        "--speed",
        default=default_of(WorkerOptions, "speed"),
        help="fast paths: auto, none, or a comma list (as hpo worker --speed)",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="out",
        type=Path,
        help="the HTML page to write (default: reproduce.html)",
    )


def run(args: argparse.Namespace, _storage_url: StorageURL | None) -> int:
    from hpo.runs.reproduce import ReproduceOptions, reproduce, table_header
    from hpo.trial.device import resolve_device, resolve_speed

    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(ReproduceOptions)
        if getattr(args, field.name, None) is not None
    }
    options = ReproduceOptions(**given)  # checked against hpo.record.limits
    check_folder_exists(options.out)
    device = resolve_device(args.device)
    speed = resolve_speed(args.speed, device)
    print(table_header())
    reproduce(options, device, speed)
    return 0
