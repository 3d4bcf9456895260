"""The `hpo` command line. Argparse stops here: below it, everything takes typed config objects."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn

import optuna

from hpo.cli.demo import DEMO_EPOCHS, DEMO_TRIALS
from hpo.errors import UsageError
from hpo.study.config import PRUNERS, SAMPLERS, StudyConfig
from hpo.study.launcher import DEFAULT_MAX_RESTARTS, DEFAULT_PER_GPU
from model.dataset_names import DATASETS
from model.presets import DEFAULT_PRESET, PRESETS
from model.speed import FAST_PATHS
from storage import StorageError, resolve_storage_url

EXIT_USAGE = 2
EXIT_PREEMPTED = 143  # 128 + SIGTERM, as a process killed by it would report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as for every other bad input; `hpo COMMAND --help` has the usage.
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# Worker settings that `hpo launch` also takes and passes on to each worker it starts.
_WORKER_TUNING: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--speed",
        dict(
            default="auto",
            help="fast paths: auto (measured defaults), none, or a "
            "comma list of " + ", ".join(FAST_PATHS),
        ),
    ),
    (
        "--checkpoint-dir",
        dict(
            default=None,
            help="folder for per-epoch checkpoints, shared by "
            "all workers of the study (default: $HPO_CHECKPOINT_DIR, else "
            "./checkpoints)",
        ),
    ),
    (
        "--heartbeat",
        dict(
            type=_positive_int, default=10, help="seconds between heartbeats of the running trial"
        ),
    ),
    (
        "--grace",
        dict(
            type=_positive_int,
            default=60,
            help="seconds without a heartbeat after which a trial is retried",
        ),
    ),
    (
        "--poll",
        dict(
            type=float,
            default=5.0,
            help="seconds an idle worker waits between looks for trials to retry",
        ),
    ),
)


def _add_worker_tuning(parser: argparse.ArgumentParser, passed_on: bool) -> None:
    for flag, options in _WORKER_TUNING:
        if passed_on:
            # None: not given, so each worker uses its own default.
            options = {**options, "default": None, "help": options["help"] + " (per worker)"}
        parser.add_argument(flag, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str, study: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--storage",
            help="study database URL (default: $HPO_STORAGE, else sqlite:///hpo.db)",
        )
        if study:
            sub.add_argument("--study", required=True, help="study name")
        return sub

    demo = command("demo", "a small real study end to end on CPU, SQLite and digits", study=False)
    demo.add_argument("--study", help="study name (default: demo-<date>-<time>)")
    demo.add_argument("--n-trials", type=_positive_int, default=DEMO_TRIALS)
    demo.add_argument("--epochs", type=_positive_int, default=DEMO_EPOCHS)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-o", "--output", type=Path, default=Path("best.json"))

    create = command("create", "create a study (a no-op if it exists with the same settings)")
    create.add_argument("--sampler", choices=SAMPLERS, default="grid")
    create.add_argument("--dataset", choices=DATASETS, default="cifar10")
    create.add_argument("--data-dir", default="data", help="where CIFAR-10 is (or goes)")
    create.add_argument(
        "--epochs", type=_positive_int, default=150, help="most epochs a trial runs"
    )
    create.add_argument(
        "--patience",
        type=_positive_int,
        default=10,
        help="stop after this many epochs without a lower test loss",
    )
    create.add_argument("--n-trials", type=_positive_int, help="TPE budget (trials in all)")
    create.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="none",
        help="also end hopeless trials early (as PRUNED)",
    )
    create.add_argument("--seed", type=int, default=0, help="training seed of every trial")
    create.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help="which of the seed's stages to train",
    )
    create.add_argument(
        "--subset", type=_positive_int, help="use only this many training images (quick checks)"
    )

    worker = command("worker", "run the study's trials until none are left")
    worker.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_worker_tuning(worker, passed_on=False)
    worker.add_argument("--max-trials", type=_positive_int, help="stop after this many trials")
    worker.add_argument(
        "--sampler-seed",
        type=int,
        help="TPE seed of this worker (default: random; give workers different ones)",
    )

    launch = command("launch", "start and supervise several local workers")
    launch.add_argument("--gpus", help="comma list of GPU indices, e.g. 0,1,2,3")
    launch.add_argument(
        "--per-gpu",
        type=_positive_int,
        default=DEFAULT_PER_GPU,
        help=f"workers per GPU (default {DEFAULT_PER_GPU}: the best measured throughput)",
    )
    launch.add_argument("--cpu", type=_positive_int, help="run N CPU workers instead of GPUs")
    launch.add_argument(
        "--max-restarts",
        type=int,
        default=DEFAULT_MAX_RESTARTS,
        help="restarts of a crashed worker before giving up on it",
    )
    _add_worker_tuning(launch, passed_on=True)

    status = command("status", "trials by state, the best so far, and running trials")
    status.add_argument(
        "--grace",
        type=_positive_int,
        default=60,
        help="a running trial without a heartbeat for this long is stale",
    )

    export = command("export", "the best parameters and epoch")
    export.add_argument("--format", choices=("json", "yaml"), default="json")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    report = command("report", "one self-contained HTML page about the study")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"))

    retrain = command(
        "train", "retrain with exported parameters for the exported epochs", study=False
    )
    retrain.add_argument("--params", type=Path, required=True, help="a file from hpo export")
    retrain.add_argument("--out", type=Path, help="save the trained model here (.pt)")
    retrain.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    retrain.add_argument("--data-dir", default="data", help="where CIFAR-10 is (or goes)")
    retrain.add_argument("--seed", type=int, default=0, help="training seed (the study's)")
    retrain.add_argument("--speed", default="auto", help="fast paths, as for hpo worker")

    stages = command(
        "reproduce", "the seed's six stages with one seed: table and curves", study=False
    )
    stages.add_argument("--dataset", choices=DATASETS, default="digits")
    stages.add_argument("--data-dir", default="data")
    stages.add_argument("--epochs", type=_positive_int, default=30)
    stages.add_argument("--learning-rate", type=float, default=0.1)
    stages.add_argument("--batch-size", type=_positive_int, default=128)
    stages.add_argument("--seed", type=int, default=0)
    stages.add_argument("--subset", type=_positive_int, help="only this many training images")
    stages.add_argument("--device", default="auto")
    stages.add_argument("--speed", default="auto")
    stages.add_argument("-o", "--output", type=Path, default=Path("reproduce.html"))

    dashboard = command("dashboard", "optuna-dashboard on the study storage", study=False)
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    dashboard.add_argument("--port", type=_positive_int, default=8080)
    dashboard.add_argument(
        "--artifact-dir",
        type=Path,
        help="folder for files uploaded through the dashboard (default: uploads are refused; "
        "each trial's learning-curve figure needs no folder)",
    )

    command("summary", "the seed's Q10 table of the network's layers and weights", study=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except (UsageError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    _quiet_libraries()
    storage_url = resolve_storage_url(getattr(args, "storage", None))
    if args.command == "summary":
        from model.summary import format_table, layer_table

        print(format_table(layer_table()))
        return 0
    if args.command == "demo":
        from hpo.cli.demo import DemoOptions, run_demo

        run_demo(
            DemoOptions(
                storage_url, args.study, args.n_trials, args.epochs, seed=args.seed, out=args.output
            )
        )
        return 0
    if args.command == "create":
        return _create(args, storage_url)
    if args.command == "worker":
        return _worker(args, storage_url)
    if args.command == "launch":
        return _launch(args, storage_url)
    if args.command == "train":
        return _train(args)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "dashboard":
        from hpo.cli.dashboard import serve_dashboard

        serve_dashboard(storage_url, args.host, args.port, args.artifact_dir)
        return 0
    from storage import open_storage

    if args.command == "status":
        from hpo.results.status import status_text

        # Heartbeat settings let the stale check run; status itself sends none.
        storage = open_storage(storage_url, heartbeat_interval=1, grace_period=args.grace)
        print(status_text(storage, args.study, args.grace))
        return 0
    storage = open_storage(storage_url)
    if args.command == "report":
        from hpo.results.export import write_text
        from hpo.results.report import build_report

        started = time.perf_counter()
        write_text(args.output, build_report(storage, args.study))
        print(
            f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        return 0
    if args.command == "export":
        from hpo.results.export import best_export, render_export, write_text

        text = render_export(best_export(storage, args.study), args.format)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_text(args.output, text)
        return 0
    raise UsageError(f"unknown command {args.command!r}")


def _create(args: argparse.Namespace, storage_url: str) -> int:
    from hpo.study.queue import create_study
    from storage import open_storage

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
    )
    storage = open_storage(storage_url, create=True)
    created = create_study(storage, args.study, config)
    what = "created" if created else "exists with the same settings:"
    print(f"study {args.study!r} {what} {config.sampler} on {config.dataset} in {storage_url}")
    return 0


def _worker(args: argparse.Namespace, storage_url: str) -> int:
    from hpo.study.worker import WorkerFailed, WorkerOptions, WorkerPreempted, run_worker

    options = WorkerOptions(
        storage_url,
        args.study,
        device=args.device,
        max_trials=args.max_trials,
        sampler_seed=args.sampler_seed,
        speed=args.speed,
        checkpoint_dir=args.checkpoint_dir,
        heartbeat_s=args.heartbeat,
        grace_s=args.grace,
        poll_s=args.poll,
    )
    try:
        summary = run_worker(options)
    except WorkerFailed as error:
        print(f"error: worker stopped: {error}", file=sys.stderr)
        return 1
    except WorkerPreempted as error:
        print(f"worker preempted: {error}", file=sys.stderr)
        return EXIT_PREEMPTED
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.states.items()))
    print(
        f"worker done: {summary.trials} trials ({counts or 'none left to run'}) "
        f"in {summary.seconds:.0f} s"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from hpo.results.retrain import read_params, retrain
    from hpo.trial.device import resolve_device, resolve_speed

    params = read_params(args.params)
    device = resolve_device(args.device)
    speed = resolve_speed(args.speed, device)
    if args.out is not None and not args.out.parent.resolve().is_dir():
        raise UsageError(f"cannot write {args.out}: folder {args.out.parent} does not exist")
    retrain(params, device, args.data_dir, args.seed, speed, args.out)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from hpo.results.reproduce import ReproduceOptions, reproduce, table_header
    from hpo.trial.device import resolve_device, resolve_speed

    if not 0 < args.learning_rate <= 10:
        raise UsageError(f"--learning-rate must be in (0, 10], got {args.learning_rate}")
    if not args.output.parent.resolve().is_dir():
        raise UsageError(f"cannot write {args.output}: folder {args.output.parent} does not exist")
    device = resolve_device(args.device)
    speed = resolve_speed(args.speed, device)
    options = ReproduceOptions(
        args.dataset,
        args.data_dir,
        args.epochs,
        args.learning_rate,
        args.batch_size,
        seed=args.seed,
        subset=args.subset,
        out=args.output,
    )
    print(table_header())
    reproduce(options, device, speed)
    return 0


def _launch(args: argparse.Namespace, storage_url: str) -> int:
    from hpo.study.launcher import LaunchOptions, launch
    from storage import open_storage

    gpus: tuple[str, ...] = ()
    if args.gpus:
        gpus = tuple(g.strip() for g in args.gpus.split(",") if g.strip())
        if not all(g.isdigit() for g in gpus):
            raise UsageError(f"--gpus {args.gpus!r}: expected GPU indices such as 0,1,2")
    elif not args.cpu:
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError("no CUDA GPU on this machine: give --cpu N for CPU workers")
        gpus = tuple(str(i) for i in range(count))
    from hpo.study.queue import load_config

    load_config(open_storage(storage_url), args.study)  # fail here, not in every worker
    passed = []
    for flag, _options in _WORKER_TUNING:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            passed += [flag, str(value)]
    options = LaunchOptions(
        storage_url,
        args.study,
        gpus=gpus,
        per_gpu=args.per_gpu,
        cpu_workers=args.cpu or 0,
        max_restarts=args.max_restarts,
        worker_args=tuple(passed),
    )
    return launch(options)


def _quiet_libraries() -> None:
    # The worker prints its own line per trial; Optuna's INFO lines and experimental-feature
    # warnings would only repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
