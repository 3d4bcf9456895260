"""`hpo worker`: join a study and run its trials until none are left."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hpo.cli.options import add_device_option, add_worker_tuning, positive_int
from hpo.study.worker import WorkerOptions

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "run the study's trials until none are left"
TAKES_STORAGE, TAKES_STUDY = True, True
EXIT_FAILED = 1
EXIT_PREEMPTED = 143  # 128 + SIGTERM, as a process killed by it would report
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_device_option(parser)
    add_worker_tuning(parser, passed_on=False)
    parser.add_argument("--max-trials", type=positive_int, help="stop after this many trials")
    parser.add_argument(
        "--sampler-seed",
        type=int,
        help="TPE seed of this worker (default: random; give workers different ones)",
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.study.worker import WorkerFailed, WorkerInterrupted, WorkerPreempted, run_worker

    options = WorkerOptions(
        storage_url=storage_url,
        study_name=args.study,
        device=args.device,
        max_trials=args.max_trials,
        sampler_seed=args.sampler_seed,
        speed=args.speed,
        checkpoint_dir=args.checkpoint_dir,
        heartbeat_s=args.heartbeat,
        grace_s=args.grace,
        poll_s=args.poll,
        outage_s=args.outage,
    )
    try:
        summary = run_worker(options)
    except WorkerFailed as error:
        print(f"error: worker stopped: {error}", file=sys.stderr)
        return EXIT_FAILED
    except WorkerInterrupted as error:
        print(f"worker interrupted: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WorkerPreempted as error:
        print(f"worker preempted: {error}", file=sys.stderr)
        return EXIT_PREEMPTED
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.states.items()))
    print(
        f"worker done: {summary.trials} trials ({counts or 'none left to run'}) "
        f"in {summary.seconds:.0f} s"
    )
    return 0
