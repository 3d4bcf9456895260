"""`hpo export`: the best parameters and epoch, as JSON or YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpo.results.export import EXPORT_FORMATS

HELP = "the best parameters and epoch (--all: every trial, as CSV or JSON lines)"
TAKES_STORAGE, TAKES_STUDY = True, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0])
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every trial, one row each: -o trials.csv, or .json/.jsonl for JSON lines "
        "(default: CSV on stdout)",
    )


def run(args: argparse.Namespace, storage_url: str) -> int:
    from hpo.results.export import best_export, render_export, write_text
    from storage import open_storage

    if args.all:
        from hpo.results.trials_table import table_format, trials_table, write_table

        table_format(args.output)  # a bad file name fails before the study is read
        table = trials_table(open_storage(storage_url), args.study)
        printed = write_table(table, args.output)
        if printed is not None:
            sys.stdout.write(printed)
        else:
            print(f"wrote {len(table)} trials to {args.output}", file=sys.stderr)
        return 0
    text = render_export(best_export(open_storage(storage_url), args.study), args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text(args.output, text)
    return 0
