"""Per-request context at the edge: a request id (the client's `X-Request-Id` when it is
a sane token, else a new one), echoed in the response, set for every log line written
while serving, and one access line and one duration sample per HTTP request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs, metrics

log = logging.getLogger("ducksheet.access")
HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex[:16]


def route_of(scope: Scope) -> str:
    """The matched route's template (bounded label values), not the raw path."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)
        token = logs.request_id.set(rid)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, rid)
        finally:
            logs.request_id.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            metrics.http_request(route, scope["method"], status, seconds)
            log.info(
                "%s %s %d %.1fms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "route": route,
                },
            )
