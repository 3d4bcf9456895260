"""The dashboard's token and read-only rule, on a stand-in WSGI application."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.dashboard.access import DashboardAccess, new_token
from hpo.dashboard.server import DashboardOptions, is_loopback, resolve_token
from hpo.errors import UsageError
from storage import parse_storage_url


def _call(app, method: str = "GET", query: str = "", **headers: str) -> tuple[str, dict, bytes]:
    seen: dict = {}

    def start_response(status, response_headers, *_exc):
        seen["status"], seen["headers"] = status, response_headers

    environ = {"REQUEST_METHOD": method, "QUERY_STRING": query}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    body = b"".join(app(environ, start_response))
    return seen["status"], dict(seen["headers"]), body


def _inner(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner"]


def test_no_token_no_entry_and_reads_only_by_default() -> None:
    app = DashboardAccess(_inner, token="t0k", allow_writes=False, port=8080)
    assert _call(app)[0].startswith("403")
    assert _call(app, authorization="token nope")[0].startswith("403")
    assert _call(app, cookie="hpo-dashboard-8080=nope")[0].startswith("403")
    assert _call(app, cookie="garbage;;=\x00")[0].startswith("403")
    assert _call(app, authorization="token t0k")[2] == b"inner"
    assert _call(app, cookie="other=1; hpo-dashboard-8080=t0k")[2] == b"inner"
    status, _, body = _call(app, "DELETE", authorization="token t0k")
    assert status.startswith("403") and b"--allow-writes" in body
    status, headers, body = _call(app, query="token=t0k")
    assert body == b"inner" and "hpo-dashboard-8080=t0k" in headers["Set-Cookie"]


def test_no_token_mode_and_writes_allowed() -> None:
    app = DashboardAccess(_inner, token=None, allow_writes=True, port=8080)
    assert _call(app, "DELETE")[2] == b"inner"
    assert _call(app, "POST")[2] == b"inner"


def test_token_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HPO_DASHBOARD_TOKEN", raising=False)
    options = DashboardOptions(storage_url=parse_storage_url("sqlite:///x.db"))
    first, second = resolve_token(options), resolve_token(options)
    assert first != second and len(first) >= 32  # random, and long
    monkeypatch.setenv("HPO_DASHBOARD_TOKEN", "from-env")
    assert resolve_token(options) == "from-env"
    (tmp_path / "t").write_text("from-file\n")
    assert (
        resolve_token(
            DashboardOptions(
                storage_url=parse_storage_url("sqlite:///x.db"), token_file=tmp_path / "t"
            )
        )
        == "from-file"
    )
    assert (
        resolve_token(
            DashboardOptions(storage_url=parse_storage_url("sqlite:///x.db"), no_token=True)
        )
        is None
    )
    with pytest.raises(UsageError, match="empty"):
        (tmp_path / "e").write_text("  \n")
        resolve_token(
            DashboardOptions(
                storage_url=parse_storage_url("sqlite:///x.db"), token_file=tmp_path / "e"
            )
        )
    assert len({new_token() for _ in range(100)}) == 100


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "example.org"))
