"""What the commands' parsers share: one-line errors, argument types, defaults taken from the
dataclasses that the commands fill, and the worker settings that `hpo launch` passes on."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, NoReturn

from hpo.errors import UsageError
from model.speed import FAST_PATHS


class HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help, followed by its default where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS, "", [], ())
        if shown and action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as for every other bad input; `hpo COMMAND --help` has the usage.
        raise UsageError(f"{message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "0 or more")


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {text!r}")
    return value


def _int_at_least(text: str, lowest: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass field `name`: the one source of a command's defaults."""
    for field in dataclasses.fields(cls):
        if field.name == name:
            if field.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{name} has no default")
            return field.default
    raise TypeError(f"{cls.__name__} has no field {name!r}")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """`--device`, as every command that trains takes it."""
    from hpo.study.worker import WorkerOptions

    parser.add_argument(
        "--device", default=default_of(WorkerOptions, "device"), help="auto, cpu, cuda or cuda:N"
    )


def add_worker_tuning(parser: argparse.ArgumentParser, passed_on: bool) -> None:
    """The worker settings; with `passed_on` (hpo launch) their default is None, not given, so
    that each worker uses its own default."""
    from hpo.study.worker import WorkerOptions

    for flag, field, options in WORKER_TUNING:
        default = None if passed_on else default_of(WorkerOptions, field)
        text = options["help"] + (" (per worker)" if passed_on else "")
        parser.add_argument(flag, **{**options, "default": default, "help": text})


def worker_tuning_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The worker settings given to `hpo launch`, as arguments for each `hpo worker`."""
    passed: list[str] = []
    for flag, _field, _options in WORKER_TUNING:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            passed += [flag, str(value)]
    return tuple(passed)


# (flag, WorkerOptions field, argparse options): the settings that `hpo worker` takes and that
# `hpo launch` passes on to each worker it starts.
WORKER_TUNING: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--speed",
        "speed",
        dict(
            help="fast paths: auto (measured defaults), none, or a comma list of "
            + ", ".join(FAST_PATHS)
        ),
    ),
    (
        "--checkpoint-dir",
        "checkpoint_dir",
        dict(
            help="folder for per-epoch checkpoints, shared by all workers of the study "
            "(default: $HPO_CHECKPOINT_DIR, else ./checkpoints)"
        ),
    ),
    (
        "--heartbeat",
        "heartbeat_s",
        dict(type=positive_int, help="seconds between heartbeats of the running trial"),
    ),
    (
        "--grace",
        "grace_s",
        dict(
            type=positive_int,
            help="seconds without a heartbeat after which a trial is retried",
        ),
    ),
    (
        "--outage",
        "outage_s",
        dict(
            type=non_negative_seconds,
            help="seconds to wait for a database that is down, restarting or full, at start and "
            "while running, before giving up",
        ),
    ),
    (
        "--poll",
        "poll_s",
        dict(type=float, help="seconds an idle worker waits between looks for trials to retry"),
    ),
)
