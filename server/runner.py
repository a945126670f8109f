"""Run the app under uvicorn with a graceful shutdown."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from server import logs
from server.app import create_app
from server.config import Settings
from server.edge.auth import is_loopback, refuse_open_mode
from server.edge.origins import allowed_origins
from server.hub.wire import FrameWriterProtocol
from server.listen import inherited
from server.services import Role

log = logging.getLogger("ducksheet")
GRACEFUL_SECONDS = 10  # longest wait for open connections on shutdown
# The cyclic collector's first threshold: CPython's 700 runs a young collection every 700
# container allocations, and a 5,000-cell block edit allocates hundreds of thousands of
# them (parsing it, deciding it) that all live until it is decided: each is scanned
# again and again. Our objects are almost never cyclic (refcounting frees them).
GC_YOUNG_THRESHOLD = 50_000


class NotifyingServer(uvicorn.Server):
    """A uvicorn server on sockets given in advance (inherited from `ducksheet serve`, or
    bound by the data process), that writes one byte to `ready_fd` once it serves."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket] | None = None,
        ready_fd: int | None = None,
    ) -> None:
        super().__init__(config)
        self.listen_sockets = sockets
        self.ready_fd = ready_fd

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or self.listen_sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # What startup built (the writer's working state, modules, the app) lives as
            # long as the process: keep it out of every later full collection's scan.
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        if self.started and self.ready_fd is not None:
            os.write(self.ready_fd, b"r")
            os.close(self.ready_fd)
            self.ready_fd = None


class QuietServer(NotifyingServer):
    """Leaves signals to its caller (the data process stops it itself)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GracefulServer(NotifyingServer):
    """On SIGTERM/SIGINT: close every WebSocket with 1001 (going away; clients resume
    with `since`), let uvicorn stop accepting and finish requests, then the lifespan
    stops the writer after its batch, publishes, checkpoints DuckDB and stops Redis."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        settings: Settings,
        sockets: list[socket.socket] | None = None,
        ready_fd: int | None = None,
    ) -> None:
        super().__init__(config, sockets, ready_fd)
        self.app = app
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Once bound: allow the origins of the ports actually listened on (port 0 picks
        one). Nothing is served before this runs: requests wait for the event loop."""
        await super().startup(sockets)
        ports = [
            sock.getsockname()[1]
            for server in getattr(self, "servers", [])
            for sock in server.sockets
            if sock.family in (socket.AF_INET, socket.AF_INET6)
        ]
        self.app.state.origins = allowed_origins(self.settings, ports)
        if not is_loopback(self.settings.host) and not self.settings.origins:
            log.warning(
                "bound to %s without DUCKSHEET_ALLOWED_ORIGINS: browsers are refused unless "
                "they open http://%s:%s; list the origins they use",
                self.settings.host,
                self.settings.host,
                ports[0] if ports else self.settings.port,
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(self.app.state, "services", None)
        if services is not None:
            await services.close_sessions()
        await super().shutdown(sockets)


def make_server(
    settings: Settings,
    log_level: str = "info",
    role: Role = "all",
    listen_fd: int | None = None,
    ready_fd: int | None = None,
) -> GracefulServer:
    """The public server of role `all` or `web`; on `listen_fd` (a socket inherited from
    `ducksheet serve`) instead of binding host and port when given."""
    app = create_app(settings, role)
    refuse_open_mode(settings.host, app.state.auth.open)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.max_block_body,
        # FrameWriterProtocol negotiates it without server context takeover, so a
        # message is compressed once for all its sockets (server/hub/wire.py).
        ws_per_message_deflate=settings.ws_compression,
        ws=FrameWriterProtocol,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        access_log=False,  # server.edge.request_context writes one line per request
        log_config=logs.uvicorn_log_config(logs.log_format()),
    )
    sockets = None if listen_fd is None else [inherited(listen_fd)]
    return GracefulServer(config, app, settings, sockets, ready_fd)
