"""`hpo train`: retrain with an export's parameters for its number of epochs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.cli.options import add_device_option, default_of
from hpo.errors import check_folder_exists
from hpo.record.config import StudyConfig
from hpo.study.worker import WorkerOptions

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "retrain with exported parameters for the exported epochs (reproduces the trial)"
TAKES_STORAGE, TAKES_STUDY = False, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, required=True, help="a file from hpo export (JSON or YAML)"
    )
    parser.add_argument(
        "-o",
        "--output",
        "--out",  # its first name, kept
        dest="out",
        type=Path,
        help="save the trained model here (.pt)",
    )
    add_device_option(parser)
    parser.add_argument(
        "--data-dir",
        default=default_of(StudyConfig, "data_dir"),
        help="where CIFAR-10 is (or goes)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help=f"training seed (default: the export's, else {default_of(StudyConfig, 'seed')})",
    )
    parser.add_argument(
        "--speed",
        help="fast paths, as for hpo worker (default: the trial's on the same kind of device, "
        f"else {default_of(WorkerOptions, 'speed')})",
    )


def run(args: argparse.Namespace, _storage_url: StorageURL | None) -> int:
    from hpo.runs.retrain import read_params, retrain, speed_for
    from hpo.trial.device import resolve_device, resolve_speed

    params = read_params(args.params)
    device = resolve_device(args.device)
    speed = resolve_speed(speed_for(params, args.speed, device), device)
    seed = args.seed if args.seed is not None else params.seed
    if seed is None:
        seed = default_of(StudyConfig, "seed")
    if args.out is not None:
        check_folder_exists(args.out)
    retrain(params, device, args.data_dir, seed, speed, args.out)
    return 0
