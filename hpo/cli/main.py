"""The `hpo` command line: one module per command, found through a table.

Argparse stops here: below it, everything takes typed config objects. Each command module has
`HELP`, `TAKES_STORAGE` and `TAKES_STUDY` (whether it takes `--storage` and a required `--study`),
`add_arguments(parser)` and `run(args, storage_url) -> exit status`; a command that only reads a
study may set `ONLY_STUDY_BY_DEFAULT`, and its `--study` then defaults to the database's one
study. Command modules import what brings torch only inside `run`, so that the command line
starts fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from types import ModuleType

import optuna

from hpo.cli import (
    confirm,
    create,
    dashboard,
    demo,
    export,
    launch,
    report,
    reproduce,
    status,
    summary,
    train,
    worker,
)
from hpo.cli.options import HelpWithDefaults, Parser
from hpo.errors import UsageError
from storage import StorageError, StorageURL, parse_storage_url, resolve_storage_url

DESCRIPTION = (
    "Hyper-parameter optimization of the seed study's CIFAR-10 CNN on Optuna: create a study, "
    "run workers on one or many GPUs, watch it, export the best parameters and epoch."
)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT

COMMANDS: dict[str, ModuleType] = {
    "demo": demo,
    "create": create,
    "worker": worker,
    "launch": launch,
    "status": status,
    "confirm": confirm,
    "export": export,
    "report": report,
    "train": train,
    "reproduce": reproduce,
    "dashboard": dashboard,
    "summary": summary,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hpo", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, module in COMMANDS.items():
        # `help` is %-formatted by argparse (a "95% interval" would break `hpo --help`).
        sub = commands.add_parser(
            name,
            help=module.HELP.replace("%", "%%"),
            description=module.HELP,
            formatter_class=HelpWithDefaults,
        )
        if module.TAKES_STORAGE:
            sub.add_argument(
                "--storage",
                help="study database URL (default: $HPO_STORAGE, else sqlite:///hpo.db)",
            )
        if module.TAKES_STUDY:
            if getattr(module, "ONLY_STUDY_BY_DEFAULT", False):
                sub.add_argument(
                    "--study", help="study name (default: the database's study, if it holds one)"
                )
            else:
                sub.add_argument("--study", required=True, help="study name")
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _quiet_libraries()
        module = COMMANDS[args.command]
        # Parsed here, once: everything below takes the StorageURL.
        storage_url = (
            parse_storage_url(resolve_storage_url(args.storage)) if module.TAKES_STORAGE else None
        )
        if module.TAKES_STUDY and args.study is None:
            args.study = _only_study(storage_url)
        return module.run(args, storage_url)
    except (UsageError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _only_study(storage_url: StorageURL | None) -> str:
    from hpo.study.queue import only_study_name
    from storage import open_storage

    assert storage_url is not None, "a command that takes --study takes --storage"
    return only_study_name(open_storage(storage_url))


def _quiet_libraries() -> None:
    # The worker prints its own line per trial; Optuna's INFO lines and experimental-feature
    # warnings would only repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # When the network goes, SQLAlchemy's pool also fails to roll back the connection it is
    # handed back and logs that with a traceback; the connection is then dropped and replaced,
    # and the storage's own line ("database unavailable during …") has already said what
    # happened (tests/test_partition.py).
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
