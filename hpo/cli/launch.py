"""`hpo launch`: start and supervise several local workers of one study."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from hpo.cli.options import add_worker_tuning, default_of, positive_int, worker_tuning_args
from hpo.errors import UsageError
from hpo.study.allocation import VISIBLE_ENV
from hpo.study.launcher import LaunchOptions

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "start and supervise several local workers"
TAKES_STORAGE, TAKES_STUDY = True, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    per_gpu = default_of(LaunchOptions, "per_gpu")
    parser.add_argument(
        "--gpus",
        help="comma list of GPU indices, e.g. 0,1,2,3, counted among the GPUs this job was "
        "given (an inherited CUDA_VISIBLE_DEVICES, as a scheduler sets it); default: all of them",
    )
    parser.add_argument(
        "--per-gpu",
        type=positive_int,
        default=per_gpu,
        help=f"workers per GPU (default {per_gpu}: the best measured throughput)",
    )
    parser.add_argument("--cpu", type=positive_int, help="run N CPU workers instead of GPUs")
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=default_of(LaunchOptions, "max_restarts"),
        help="restarts of a crashed worker before giving up on it",
    )
    add_worker_tuning(parser, passed_on=True)


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.study.launcher import launch
    from hpo.study.queue import load_config
    from storage import open_storage
    from storage.retries import DEFAULT_OUTAGE_S

    gpus = _gpus(args.gpus) if args.gpus or not args.cpu else ()
    # Fail here, not in every worker; wait for a database that is still starting, as they would.
    outage_s = args.outage if args.outage is not None else DEFAULT_OUTAGE_S
    load_config(open_storage(storage_url, outage_s=outage_s), args.study)
    options = LaunchOptions(
        storage_url=storage_url,
        study_name=args.study,
        gpus=gpus,
        per_gpu=args.per_gpu,
        cpu_workers=args.cpu or 0,
        max_restarts=args.max_restarts,
        worker_args=worker_tuning_args(args),
    )
    return launch(options)


def _gpus(given: str | None) -> tuple[str, ...]:
    """The GPU indices given, or every GPU of the machine."""
    import torch

    count = torch.cuda.device_count()
    if given:
        gpus = tuple(g.strip() for g in given.split(",") if g.strip())
        if not gpus or not all(g.isdigit() for g in gpus):
            raise UsageError(f"--gpus {given!r}: expected GPU indices such as 0,1,2")
        if count == 0:
            given_to_job = os.environ.get(VISIBLE_ENV)
            job = f" (this job's {VISIBLE_ENV}={given_to_job})" if given_to_job else ""
            raise UsageError(
                f"--gpus {given}: CUDA is not available on this machine{job}; give --cpu N for "
                "CPU workers"
            )
        missing = [g for g in gpus if int(g) >= count]
        if missing:
            raise UsageError(
                f"--gpus {given}: this machine has {count} GPU(s), numbered 0 to {count - 1}"
            )
        return gpus
    if count == 0:
        raise UsageError("no CUDA GPU on this machine: give --cpu N for CPU workers")
    return tuple(str(i) for i in range(count))
