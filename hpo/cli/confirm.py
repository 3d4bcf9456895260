"""`hpo confirm`: retrain the study's top configurations with new seeds, then say whether the
winner is real."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hpo.cli.options import positive_int
from hpo.confirm.companion import DEFAULT_SEEDS, DEFAULT_TOP

if TYPE_CHECKING:
    from storage import StorageURL

HELP = (
    "queue the top configurations again with new seeds (run them with hpo worker on "
    "<study>-confirm), and report the mean and 95% interval of each"
)
TAKES_STORAGE, TAKES_STUDY = True, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--top",
        type=positive_int,
        help=f"how many of the best configurations to confirm (default: {DEFAULT_TOP})",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        help=f"new training seeds per configuration (default: {DEFAULT_SEEDS})",
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.confirm.companion import confirmation_name, confirmation_of, create_confirmation
    from hpo.confirm.statistics import confirmation_lines, load_confirmation
    from hpo.study.queue import load_config
    from storage import open_storage

    storage = open_storage(storage_url)
    load_config(storage, args.study)  # one clear error for a study that is not there
    if (
        confirmation_of(storage, args.study) is None
        or args.top is not None
        or args.seeds is not None
    ):
        created = create_confirmation(
            storage_url, args.study, args.top or DEFAULT_TOP, args.seeds or DEFAULT_SEEDS
        )
        if created:
            print(f"queued the confirmation in study {confirmation_name(args.study)!r}")
    confirmation = load_confirmation(storage, args.study)
    assert confirmation is not None  # made above
    print("\n".join(confirmation_lines(confirmation)))
    return 0
