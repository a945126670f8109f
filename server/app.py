"""The Starlette application: routes, error handling and the lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from protocol.errors import ProtocolError
from server import metrics
from server.config import Settings
from server.edge import rest
from server.edge.analytics_routes import routes as analytics_routes
from server.edge.auth import Authenticator, TokenError, load_tokens
from server.edge.metrics_route import get_metrics
from server.edge.openapi import spec
from server.edge.origins import BrowserGuard, allowed_origins
from server.edge.request_context import RequestContext
from server.edge.sockets import websocket_endpoint
from server.services import Role, Services

STATIC = Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger("ducksheet.edge")


async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def openapi(request: Request) -> Response:
    rest.authorize(request, "viewer")  # with tokens, like every other endpoint
    return rest.json_response(spec())


async def protocol_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    metrics.edge_rejected(exc.code)
    return rest.error_response(exc)


async def redis_unavailable(request: Request, exc: Exception) -> Response:
    """A read that needed Redis while it is away (or every pooled connection is busy):
    503, as edits are answered then, instead of a 500."""
    log.warning("a request found redis unavailable: %s", exc)  # not to clients: addresses
    return await protocol_error(request, ProtocolError("unavailable", "redis is unavailable"))


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(_request: Request, exc: Exception) -> Response:
    """Unknown paths, wrong methods: the same JSON error envelope as everything else."""
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "bad_message")
    response = rest.json_response(
        {"error": {"code": code, "message": str(exc.detail)}}, exc.status_code
    )
    response.headers.update(exc.headers or {})
    return response


def create_app(settings: Settings, role: Role = "all") -> Starlette:
    """The public app of role `all` or `web`; raises TokenError when the tokens setting
    or file is malformed."""
    auth = Authenticator(load_tokens(settings.tokens, settings.tokens_file))
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        raise TokenError("DUCKSHEET_METRICS_TOKEN needs at least 16 characters")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.start(settings, auth, role)
        app.state.services = services
        try:
            yield
        finally:
            await services.stop()

    routes = [
        Route("/", index),
        Route("/update_cell", rest.update_cell, methods=["POST"]),
        Route("/update_cells", rest.update_cells, methods=["POST"]),
        Route("/undo", rest.post_undo, methods=["POST"]),
        Route("/redo", rest.post_redo, methods=["POST"]),
        Route("/history", rest.get_history),
        Route("/holds", rest.post_hold, methods=["POST"]),
        Route("/holds", rest.get_holds, methods=["GET"]),
        Route("/requests/{request_id}", rest.get_request),
        Route("/versions", rest.get_versions, methods=["GET"]),
        Route("/versions", rest.post_version, methods=["POST"]),
        Route("/versions/{name}/lock", rest.post_lock, methods=["POST"]),
        Route("/versions/{name}/unlock", rest.post_unlock, methods=["POST"]),
        Route("/compare", rest.get_compare),
        Route("/get_updates", rest.get_updates),
        Route("/view_table/{table}", rest.get_view_table),
        Route("/healthz", rest.healthz),
        Route("/metrics", get_metrics),
        Route("/openapi.json", openapi),
        *analytics_routes,
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ProtocolError: protocol_error,
            HTTPException: http_error,
            RedisConnectionError: redis_unavailable,
            RedisTimeoutError: redis_unavailable,
        },
        middleware=[Middleware(RequestContext), Middleware(BrowserGuard)],
    )
    app.state.auth = auth
    # The configured port; the runner replaces it with the ports it actually listens on.
    app.state.origins = allowed_origins(settings, [settings.port])
    return app
