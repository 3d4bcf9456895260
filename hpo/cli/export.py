"""`hpo export`: the best parameters and epoch, as JSON or YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.errors import UsageError
from hpo.reports.export import EXPORT_FORMATS

if TYPE_CHECKING:
    from storage import StorageURL

HELP = (
    "the best parameters and epoch (--all: every trial, as CSV or JSON lines; --model: the "
    "winner's weights)"
)
TAKES_STORAGE, TAKES_STUDY = True, True
ONLY_STUDY_BY_DEFAULT = True  # reads only: the database's one study when --study is left out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0], help="the export's format"
    )
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every trial, one row each: -o trials.csv, or .json/.jsonl for JSON lines "
        "(default: CSV on stdout)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="FILE.pt",
        help="also write the winner's kept best-epoch weights, a self-describing model file "
        "(nothing is trained)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        help="the workers' checkpoint folder, which holds the kept models (default: "
        "$HPO_CHECKPOINT_DIR, else ./checkpoints)",
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    from hpo.reports.export import best_export, render_export, write_text, write_winner_model
    from storage import open_storage

    if args.all and args.model is not None:
        raise UsageError("--model writes the winner's weights; it does not go with --all")
    if args.all:
        from hpo.reports.trials_table import table_format, trials_table, write_table

        table_format(args.output)  # a bad file name fails before the study is read
        table = trials_table(open_storage(storage_url), args.study)
        printed = write_table(table, args.output)
        if printed is not None:
            sys.stdout.write(printed)
        else:
            print(f"wrote {len(table)} trials to {args.output}", file=sys.stderr)
        return 0
    storage = open_storage(storage_url)
    export = best_export(storage, args.study)
    if args.model is not None:
        write_winner_model(storage, export, args.model, args.checkpoint_dir)
    text = render_export(export, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text(args.output, text)
    return 0
