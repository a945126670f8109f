"""The data role's parts: the DuckDB file, the writer and its persister, the reads on
DuckDB cursors, and the embedded Redis when no REDIS_URL is given. Imported only by the
processes that run them (a web process has none of this in its memory)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import duckdb

from server.analytics.local_reads import LocalReads
from server.config import Settings
from server.edge.auth import Authenticator
from server.hub.fanout import Hub
from server.services import Role, Services
from server.store.db import Database
from server.store.embedded_redis import EmbeddedRedis
from server.store.streams import WRITER_CONNECTIONS, connect, ensure_group
from server.writer.batch import Limits
from server.writer.loop import Writer

log = logging.getLogger("ducksheet")
LOCK_WAIT = 30.0  # seconds to wait for a previous data process to release the DuckDB file
WRITER_SWITCH_INTERVAL = 0.0005  # seconds a thread keeps the GIL before others may take it


async def start_data(settings: Settings, auth: Authenticator, role: Role) -> Services:
    """The parts of the data role (`data`, or `all`: with the edge's hub as well)."""
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir, settings.appendfsync)
        url = embedded.start()
        log.info("embedded redis-server started (pid %s)", embedded.pid)
    db = Database(
        settings.database_path,
        settings.read_threads,
        settings.duckdb_threads,
        settings.write_niceness,
        settings.duckdb_memory_mb,
    )
    try:
        await _open_database(db, settings)
        redis = connect(url, settings.redis_connections)
        await ensure_group(redis)
        hub = Hub(redis) if role == "all" else None
        if hub is not None:
            await hub.prime()
    except BaseException:
        db.close()
        if embedded is not None:
            embedded.stop()
        raise
    # The persister's thread runs Python between its DuckDB calls, and at the default
    # 5 ms switch interval the writer's event loop waited that long for the GIL.
    sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
    limits = Limits.of(settings)
    writer = Writer(
        db,
        connect(url, WRITER_CONNECTIONS, wait=False),  # its own: never many commands out
        limits,
        settings.batch_size,
        settings.response_retention,
        group_commit=settings.group_commit_ms / 1000,
    )
    writing = asyncio.create_task(writer.run(), name="writer")
    reads = LocalReads(db, settings.data_dir, lambda: writer_status(writer, writing))
    services = Services(settings, db, redis, hub, writer, reads, role, auth, embedded)
    services.tasks = [writing]
    if hub is not None:
        services.tasks.append(asyncio.create_task(hub.run(), name="hub"))
        presence = hub.presence.run(services._stopping)
        services.tasks.append(asyncio.create_task(presence, name="presence"))
    services.tasks.append(asyncio.create_task(services._sample_process(), name="metrics-sampler"))
    if embedded is not None:
        services.tasks.append(asyncio.create_task(services._watch_redis(), name="redis-watch"))
    await services._writer_ready()
    return services


def writer_status(writer: Writer, task: asyncio.Task[None]) -> dict[str, Any]:
    """The writer's part of /healthz: its state, and how far it applied and persisted."""
    state = "stopped" if task.done() else ("ok" if writer.ready.is_set() else "loading")
    persister = writer.persister
    status = {
        "writer": state,
        "last_applied": writer.last_applied,
        "persisted": persister.persisted if persister else None,
        "applied_requests": writer.applied_requests,
    }
    if persister is not None:
        status["persist_lag"] = persister.lag_percentiles()
        status["checkpoints"] = len(persister.checkpoints)
    return status


async def _open_database(db: Database, settings: Settings) -> None:
    """Open the file, waiting while a previous data process (one that is still shutting
    down after its parent died) holds DuckDB's lock on it."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            await asyncio.to_thread(db.open, settings.seed_sales, settings.seed)
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            log.info("the database is still locked by another process; waiting")
            await asyncio.sleep(0.2)
