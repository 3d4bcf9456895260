"""`hpo status`: trials by state, the best so far, and what runs now."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hpo.cli.options import default_of, positive_int
from hpo.study.worker import WorkerOptions

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "trials by state, the best so far, and running trials"
TAKES_STORAGE, TAKES_STUDY = True, True
ONLY_STUDY_BY_DEFAULT = True  # reads only: the database's one study when --study is left out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        type=positive_int,
        default=default_of(WorkerOptions, "grace_s"),
        help="a running trial without a heartbeat for this long is stale",
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.reports.status import status_text
    from storage import open_storage

    # Heartbeat settings let the stale check run; status itself sends none.
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=args.grace)
    print(status_text(storage, args.study))
    return 0
