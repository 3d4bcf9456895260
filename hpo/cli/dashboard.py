"""`hpo dashboard`: optuna-dashboard on the study storage, on the loopback interface by default.

optuna-dashboard has no authentication and its API can delete studies, so anything but a
loopback address gets a warning. Its artifact store draws each trial's learning curves from the
database (hpo.results.trial_figure); `artifact_dir` keeps files uploaded through the dashboard.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from pathlib import Path

from hpo.cli.options import positive_int
from hpo.errors import UsageError
from storage import open_storage

HELP = "optuna-dashboard on the study storage"
TAKES_STORAGE, TAKES_STUDY = True, False
LOOPBACK_NAMES = ("localhost",)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: loopback only)"
    )
    parser.add_argument("--port", type=positive_int, default=DEFAULT_PORT)
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        help="folder for files uploaded through the dashboard (default: uploads are refused; "
        "each trial's learning-curve figure needs no folder)",
    )


def run(args: argparse.Namespace, storage_url: str) -> int:
    serve_dashboard(storage_url, args.host, args.port, args.artifact_dir)
    return 0


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_dashboard(
    storage_url: str,
    host: str,
    port: int,
    artifact_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> None:
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from hpo.results.trial_figure import CurvesArtifactStore

    storage = open_storage(storage_url)
    files = None
    if artifact_dir is not None:
        if not artifact_dir.is_dir():
            raise UsageError(f"--artifact-dir {artifact_dir}: no such folder")
        files = FileSystemArtifactStore(str(artifact_dir))
    if not is_loopback(host):
        say(
            f"warning: optuna-dashboard has no authentication and its API can delete studies; "
            f"listening on {host} exposes it to every machine that can reach this one"
        )
    say(f"optuna-dashboard on http://{host}:{port}/ for {storage_url} (Ctrl-C stops it)")
    artifacts = CurvesArtifactStore(storage, files)
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=artifacts)
