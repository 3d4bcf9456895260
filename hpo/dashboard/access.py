"""Who may use the dashboard, and what for: a token for every request, and read-only by default.

optuna-dashboard has no authentication, and its API creates, renames and deletes studies, tells
trials a state and writes attributes and notes. On a shared GPU or login node the loopback
interface is reachable by every user of the machine, so loopback-only is no access control.
`DashboardAccess` wraps optuna-dashboard's WSGI application:

- **a token**, as Jupyter does: every request without it gets 403, pages, API and artifacts alike.
  The URL that `hpo dashboard` prints carries it (`?token=…`); the first visit sets a cookie
  (HttpOnly, SameSite=Strict, named after the port), so the browser keeps working without it.
  Scripts may send `Authorization: token …` instead;
- **read-only**: every request that could change the storage (any method but GET, HEAD and
  OPTIONS: optuna-dashboard changes nothing on a GET) gets 403 with the reason, unless writes are
  allowed.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

TOKEN_PARAM = "token"
TOKEN_BYTES = 24  # 192 random bits, as URL-safe text
READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITES_REFUSED = (
    "this dashboard is read-only: it changes no study, trial, note or artifact; "
    "start hpo dashboard with --allow-writes to allow that"
)
TOKEN_MISSING = (
    "this dashboard needs its token: open the URL that hpo dashboard printed "
    "(…?token=…), or send the header 'Authorization: token …'"
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class DashboardAccess:
    """WSGI middleware: `token` None lets everyone in (``--no-token``)."""

    def __init__(self, app: WSGIApp, token: str | None, allow_writes: bool, port: int) -> None:
        self.app = app
        self.token = token
        self.allow_writes = allow_writes
        self.cookie_name = f"hpo-dashboard-{port}"  # cookies ignore ports; dashboards must not

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        from_url = False
        if self.token is not None:
            given, from_url = self._given_token(environ)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return _refuse(start_response, TOKEN_MISSING)
        if not self.allow_writes and environ.get("REQUEST_METHOD", "GET") not in READ_METHODS:
            return _refuse(start_response, WRITES_REFUSED)
        if not from_url:
            return self.app(environ, start_response)

        def with_cookie(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            cookie = f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            return start_response(status, [*headers, ("Set-Cookie", cookie)], *exc_info)

        return self.app(environ, with_cookie)

    def _given_token(self, environ: dict[str, Any]) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the URL."""
        in_url = parse_qs(environ.get("QUERY_STRING", "")).get(TOKEN_PARAM)
        if in_url:
            return in_url[0], True
        scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            return value.strip(), False
        cookies = SimpleCookie()
        try:
            cookies.load(environ.get("HTTP_COOKIE", ""))
        except Exception:  # a malformed Cookie header is no token
            return None, False
        morsel = cookies.get(self.cookie_name)
        return (morsel.value if morsel is not None else None), False


def _refuse(start_response: StartResponse, reason: str) -> list[bytes]:
    body = f"403 Forbidden: {reason}\n".encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
