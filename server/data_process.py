"""`ducksheet serve --role data`: the writer and the reads of one DuckDB file, the reads
served to web processes on the internal API (server/analytics/read_api.py).

The API socket is bound only once DuckDB's lock is held, so a data process still
shutting down (its parent was killed) is never cut off by its successor, and its
address is published only once the writer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from server import logs
from server.analytics.local_reads import LocalReads
from server.analytics.read_api import create_read_api
from server.config import Settings
from server.edge.auth import Authenticator
from server.listen import DATA_SOCKET, bind_data_api
from server.runner import QuietServer
from server.services import Services
from server.store.data_address import DataAddress

log = logging.getLogger("ducksheet")


async def serve_data(settings: Settings, ready_fd: int | None, log_level: str = "info") -> None:
    if settings.redis_url is None:
        raise SystemExit("--role data needs REDIS_URL (the Redis its web processes use)")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    services = await Services.start(settings, Authenticator({}), "data")
    try:
        if not stopping.is_set():
            await _serve_reads(services, settings, stopping, ready_fd, log_level)
    finally:
        await services.stop()  # the writer finishes its batch; DuckDB is checkpointed
        if settings.data_listen == "":
            with contextlib.suppress(FileNotFoundError):
                (settings.data_dir / DATA_SOCKET).unlink()
    log.info("data process stopped")


async def _serve_reads(
    services: Services,
    settings: Settings,
    stopping: asyncio.Event,
    ready_fd: int | None,
    log_level: str,
) -> None:
    sock, url = bind_data_api(settings.data_dir, settings.data_listen)
    address = DataAddress.new(url)
    assert isinstance(services.reads, LocalReads)
    app = create_read_api(services.reads, address.secret)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        log_config=logs.uvicorn_log_config(logs.log_format()),
    )
    server = QuietServer(config, [sock], ready_fd)
    await services.publish_address(address)
    serving = asyncio.create_task(server.serve())
    log.info("data process serving reads on %s", url)
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stop.cancel()
    await serving
    sock.close()
