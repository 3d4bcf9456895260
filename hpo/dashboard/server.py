"""`hpo dashboard`: optuna-dashboard on the study storage, behind a token and read-only.

On the loopback interface by default; anything else gets a warning. Every request needs the
token that is printed in the URL at start (hpo.dashboard.access), and nothing that
changes a study is allowed unless `allow_writes`. Its artifact store draws each trial's learning
curves from the database (hpo.figures.trial_figure); `artifact_dir` keeps files uploaded through
the dashboard, when writes are allowed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpo.dashboard.access import DashboardAccess, new_token
from hpo.errors import UsageError
from storage import StorageURL, open_storage

LOOPBACK_NAMES = ("localhost",)
TOKEN_ENV = "HPO_DASHBOARD_TOKEN"


@dataclass(frozen=True, kw_only=True)
class DashboardOptions:
    storage_url: StorageURL
    host: str = "127.0.0.1"  # loopback only
    port: int = 8080
    artifact_dir: Path | None = None  # uploads through the dashboard; None: refused
    checkpoint_dir: str | None = None  # the workers' folder: its models/ holds kept weights
    token_file: Path | None = None  # the token's file; default: $HPO_DASHBOARD_TOKEN, else random
    no_token: bool = False  # anyone who reaches the port may use it (a machine of one's own)
    allow_writes: bool = False  # create, rename, delete, tell, notes, uploads
    # The address people open when it is not http://host:port: a container's port published on
    # the host's loopback, a proxy. Printed in the URL in place of host and port.
    public_url: str | None = None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(options: DashboardOptions) -> str | None:
    """The token every request must carry: from `token_file`, else $HPO_DASHBOARD_TOKEN, else a
    new random one; None with `no_token`."""
    if options.no_token:
        if options.token_file is not None:
            raise UsageError("--no-token and --token-file contradict each other")
        return None
    if options.token_file is not None:
        try:
            token = options.token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read --token-file {options.token_file}: {error}") from None
        if not token:
            raise UsageError(f"--token-file {options.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or new_token()


def serve_dashboard(options: DashboardOptions, say: Callable[[str], None] = print) -> None:
    import bottle
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from hpo.figures.trial_figure import CurvesArtifactStore
    from hpo.trial.folders import models_folder

    token = resolve_token(options)
    storage = open_storage(options.storage_url)
    _check_port_free(options.host, options.port)
    files = None
    if options.artifact_dir is not None:
        if not options.artifact_dir.is_dir():
            raise UsageError(f"--artifact-dir {options.artifact_dir}: no such folder")
        files = FileSystemArtifactStore(str(options.artifact_dir))
    # Kept models are read from the workers' checkpoint folder (never written through here).
    models = FileSystemArtifactStore(str(models_folder(options.checkpoint_dir)))
    if options.public_url is not None:
        # Whoever set it decided where the port is reachable (compose publishes it on loopback).
        say(f"listening on {options.host}:{options.port}, opened as {options.public_url}")
    elif not is_loopback(options.host):
        say(
            f"warning: listening on {options.host} exposes the dashboard to every machine that "
            "can reach this one" + ("" if token else ", and with --no-token to anyone of them")
        )
    if token is None:
        say(
            "warning: --no-token: anyone who can reach this port can use the dashboard"
            + (" and change or delete studies" if options.allow_writes else "")
        )
    app = DashboardAccess(
        optuna_dashboard.wsgi(storage, artifact_store=CurvesArtifactStore(storage, files, models)),
        token=token,
        allow_writes=options.allow_writes,
        port=options.port,
    )
    base = (options.public_url or f"http://{options.host}:{options.port}").rstrip("/")
    url = f"{base}/dashboard"
    mode = "read and write" if options.allow_writes else "read-only"
    say(
        f"optuna-dashboard ({mode}) for {options.storage_url.render()} on "
        + (f"{url}?token={token}" if token else url)
        + " (Ctrl-C stops it)"
    )
    # SIGTERM (`docker stop`, a scheduler) stops it: as a container's PID 1 it would otherwise
    # get no default action, and be killed after the stop timeout. The server is asked to stop
    # from a thread, once its request in hand is answered (an exception raised by the signal
    # inside a request would be answered as that request's error, and the server go on).
    server = bottle.WSGIRefServer(host=options.host, port=options.port, quiet=True)

    def stop_serving(signum: int, frame: object) -> None:
        serving = getattr(server, "srv", None)  # made when bottle starts the server
        if serving is None:
            raise KeyboardInterrupt  # not serving yet: stop here
        threading.Thread(target=serving.shutdown, name="dashboard-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop_serving)
    signal.signal(signal.SIGINT, stop_serving)  # Ctrl-C: the same
    bottle.run(app, server=server, quiet=True)
    say("optuna-dashboard stopped")


def _check_port_free(host: str, port: int) -> None:
    """A UsageError, before any URL or token is printed, when the port is taken."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} is in use (another dashboard?); pick another with --port"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None

