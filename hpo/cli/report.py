"""`hpo report`: one self-contained HTML page about a study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "one self-contained HTML page about the study"
TAKES_STORAGE, TAKES_STUDY = True, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"))


def run(args: argparse.Namespace, storage_url: str) -> int:
    from hpo.results.export import write_text
    from hpo.results.report import build_report
    from storage import open_storage

    started = time.perf_counter()
    write_text(args.output, build_report(open_storage(storage_url), args.study))
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0
