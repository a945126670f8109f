"""Which browser origins may talk to the server, and the guard on state-changing REST.

Any page a user visits can send requests to a server on their machine. The allowed
origins therefore come from configuration only: the bind host and the port actually
listened on (read from the listening sockets once uvicorn has bound them, so port 0
works), the loopback names when bound to loopback, and DUCKSHEET_ALLOWED_ORIGINS. The
request's own Host header never counts: with DNS rebinding an attacker's name resolves
to 127.0.0.1 and the browser sends `Host: evil.example:PORT` with a matching Origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from protocol.codec import dumps
from protocol.errors import ProtocolError
from server.config import Settings
from server.edge.auth import is_loopback

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json"})
# Not a type a page can send cross-site without a CORS preflight (which this server
# never answers): text/plain, form encodings and a missing type are refused.
CSV_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "application/octet-stream",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",  # xlsx
    }
)


def _host_literal(host: str) -> str:
    """A bind host as it appears in an origin ("::1" is written "[::1]")."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host.lower()


def allowed_origins(settings: Settings, ports: Iterable[int]) -> frozenset[str]:
    """The origins of the grid as served on `ports`, plus the configured extra ones."""
    hosts = {_host_literal(settings.host)}
    if is_loopback(settings.host):
        hosts.update(LOOPBACK_NAMES)
    origins: set[str] = set()
    for port in ports:
        if port <= 0:
            continue  # not bound yet: nothing matches
        for host in hosts:
            origins.add(f"http://{host}:{port}")
            if port == 80:
                origins.add(f"http://{host}")  # browsers leave the default port out
    return frozenset(origins | {o.lower() for o in settings.origins})


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Browsers send Origin; a request without one (curl, other servers) is no browser's
    and passes. `null` (sandboxed frames, file: pages) is never allowed."""
    if origin is None:
        return True
    return origin.strip().rstrip("/").lower() in allowed


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def refusal(scope: Scope, allowed: frozenset[str]) -> ProtocolError | None:
    """Why a state-changing request is refused (None: it is not)."""
    if not origin_allowed(_header(scope, b"origin"), allowed):
        return ProtocolError(
            "forbidden",
            "requests from this origin are refused; allowed origins are the server's own "
            "and DUCKSHEET_ALLOWED_ORIGINS",
        )
    if scope["method"] != "POST":
        return None
    media_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    is_import = scope.get("path", "").startswith("/import/")
    wanted = CSV_TYPES if is_import else JSON_TYPES
    if media_type not in wanted:
        return ProtocolError(
            "forbidden",
            f"send the body with Content-Type: {' or '.join(sorted(wanted))}"
            f" (got {media_type[:60] or 'none'!r})",
        )
    return None


class BrowserGuard:
    """Refuses state-changing REST requests (every method but GET, HEAD, OPTIONS) from a
    foreign Origin, and POSTs without their JSON (or, for imports, CSV) content type:
    403 with the JSON error envelope, before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            allowed: frozenset[str] = scope["app"].state.origins
            error = refusal(scope, allowed)
            if error is not None:
                await _send_error(send, error)
                return
        await self.app(scope, receive, send)


async def _send_error(send: Send, error: ProtocolError) -> None:
    body = dumps({"error": error.as_dict()})
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 403, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
