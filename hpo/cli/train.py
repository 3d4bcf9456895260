"""`hpo train`: retrain with an export's parameters for its number of epochs."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo.cli.options import default_of
from hpo.errors import UsageError
from hpo.study.config import StudyConfig
from hpo.study.worker import WorkerOptions

HELP = "retrain with exported parameters for the exported epochs"
TAKES_STORAGE, TAKES_STUDY = False, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, required=True, help="a file from hpo export")
    parser.add_argument("--out", type=Path, help="save the trained model here (.pt)")
    parser.add_argument(
        "--device", default=default_of(WorkerOptions, "device"), help="auto, cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--data-dir",
        default=default_of(StudyConfig, "data_dir"),
        help="where CIFAR-10 is (or goes)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=default_of(StudyConfig, "seed"),
        help="training seed (the study's)",
    )
    parser.add_argument(
        "--speed", default=default_of(WorkerOptions, "speed"), help="fast paths, as for hpo worker"
    )


def run(args: argparse.Namespace, _storage_url: str) -> int:
    from hpo.results.retrain import read_params, retrain
    from hpo.trial.device import resolve_device, resolve_speed

    params = read_params(args.params)
    device = resolve_device(args.device)
    speed = resolve_speed(args.speed, device)
    if args.out is not None and not args.out.parent.resolve().is_dir():
        raise UsageError(f"cannot write {args.out}: folder {args.out.parent} does not exist")
    retrain(params, device, args.data_dir, args.seed, speed, args.out)
    return 0
