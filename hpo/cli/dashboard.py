"""`hpo dashboard`: optuna-dashboard on the study storage, behind a token and read-only."""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.cli.options import default_of, positive_int
from hpo.dashboard.server import DashboardOptions, serve_dashboard

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "optuna-dashboard on the study storage (a token for every request, read-only)"
TAKES_STORAGE, TAKES_STUDY = True, False


def web_address(text: str) -> str:
    """An http(s) address with a host: what a browser can open."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(
            f"expected an address such as http://HOST:PORT, got {text!r}"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=default_of(DashboardOptions, "host"),
        help="address to listen on (default: loopback only)",
    )
    parser.add_argument(
        "--port",
        type=positive_int,
        default=default_of(DashboardOptions, "port"),
        help="the port it listens on",
    )
    parser.add_argument(
        "--public-url",
        type=web_address,
        help="the address people open, printed in place of http://HOST:PORT: a container's port "
        "published on the host, a proxy (default: http://HOST:PORT)",
    )
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        help="folder for files uploaded through the dashboard, with --allow-writes (default: "
        "uploads are refused; each trial's learning-curve figure needs no folder)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        help="the workers' checkpoint folder, whose kept models the dashboard lists for download "
        "(default: $HPO_CHECKPOINT_DIR, else ./checkpoints)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the token that every request needs (default: $HPO_DASHBOARD_TOKEN, "
        "else a random one, printed in the URL)",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help="no token: anyone who can reach the port may use it (a machine of your own only)",
    )
    parser.add_argument(
        "--allow-writes",
        action="store_true",
        help="let the dashboard change the storage: create, rename and delete studies, tell "
        "trials, write notes and attributes, upload (default: read-only)",
    )


def run(args: argparse.Namespace, storage_url: StorageURL) -> int:
    serve_dashboard(
        DashboardOptions(
            storage_url=storage_url,
            host=args.host,
            port=args.port,
            artifact_dir=args.artifact_dir,
            checkpoint_dir=args.checkpoint_dir,
            token_file=args.token_file,
            no_token=args.no_token,
            allow_writes=args.allow_writes,
            public_url=args.public_url,
        )
    )
    return 0
