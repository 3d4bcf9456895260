"""`hpo dashboard`: optuna-dashboard on the study storage, on the loopback interface by default.

optuna-dashboard has no authentication and its API can delete studies, so anything but a
loopback address gets a warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from storage import open_storage

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_dashboard(
    storage_url: str, host: str, port: int, say: Callable[[str], None] = print
) -> None:
    import optuna_dashboard

    storage = open_storage(storage_url)
    if not is_loopback(host):
        say(
            f"warning: optuna-dashboard has no authentication and its API can delete studies; "
            f"listening on {host} exposes it to every machine that can reach this one"
        )
    say(f"optuna-dashboard on http://{host}:{port}/ for {storage_url} (Ctrl-C stops it)")
    optuna_dashboard.run_server(storage, host=host, port=port)
