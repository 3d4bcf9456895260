"""`hpo report`: one self-contained HTML page about a study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "one self-contained HTML page about the study (several --study: side by side)"
TAKES_STORAGE, TAKES_STUDY = True, False  # its own --study, which may be given several times


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--study",
        action="append",
        help="study name; give it several times to compare studies on one page (default: the "
        "database's one study, when it holds one)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("report.html"), help="the HTML report to write"
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.reports.comparison import build_comparison
    from hpo.reports.export import write_text
    from hpo.reports.report import build_report
    from hpo.study.queue import only_study_name
    from storage import open_storage

    started = time.perf_counter()
    storage = open_storage(storage_url)
    # Each once, in the order given.
    names = list(dict.fromkeys(args.study or [only_study_name(storage)]))
    page = build_report(storage, names[0]) if len(names) == 1 else build_comparison(storage, names)
    write_text(args.output, page)
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0
