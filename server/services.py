"""The long-lived parts of a running server, started and stopped by the app lifespan.

A process runs one role: `all` (every part, one process), `data` (the DuckDB file, the
writer and the reads, served to web processes) or `web` (the edges and the hub, reads
forwarded to the data process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import redis.asyncio as aioredis

from protocol.actions import ImportSpec
from protocol.errors import ProtocolError
from server import metrics
from server.config import Settings
from server.edge.auth import Authenticator
from server.edge.data_watch import DataWatch
from server.edge.reads import Reads
from server.edge.remote_reads import RemoteReads
from server.edge.sql_trees import TREES, SqlTrees
from server.edge.submit import Submitter
from server.hub.fanout import Hub
from server.store.data_address import DataAddress, keep_published, publish, withdraw
from server.store.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from server.store.streams import (
    REDIS_ERRORS,
    Enqueuer,
    connect,
)

if TYPE_CHECKING:
    from server.store.db import Database
    from server.writer.loop import Writer

log = logging.getLogger("ducksheet")
Role = Literal["all", "web", "data"]
T = TypeVar("T")
ROLES: tuple[Role, ...] = ("all", "web", "data")
WATCH_INTERVAL = 0.5  # seconds between checks that the embedded Redis still runs
SAMPLE_INTERVAL = 5.0  # seconds between samples of this process's memory (metrics)
IMPORT_WAIT = 600.0  # seconds an import request waits for the writer before answering 202


@dataclass
class Services:
    settings: Settings
    db: Database | None  # the data roles only
    redis: aioredis.Redis
    hub: Hub | None  # the web roles only
    writer: Writer | None  # the data roles only
    reads: Reads
    role: Role = "all"
    auth: Authenticator = field(default_factory=lambda: Authenticator({}))
    embedded: EmbeddedRedis | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sessions: set[Any] = field(default_factory=set)  # open WebSocket sessions
    submitter: Submitter | None = field(init=False)  # the edges' one way into request_duck
    data_watch: DataWatch | None = None  # a web process's view of the data process
    data_address: DataAddress | None = None  # where a data process serves its reads
    sql_trees: SqlTrees | None = None  # a web process's text conditions (sql_trees.py)
    closing: bool = False  # shutdown began: sockets that open now are closed at once
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        hub = self.hub
        self.submitter = (
            None if hub is None else Submitter(Enqueuer(self.redis), hub, self.check_writable)
        )

    def check_writable(self) -> None:
        """Refuse new edits while they could not be applied (answered as 503)."""
        if self.hub is not None and self.hub.persist_failed:  # the writer said so, at once
            raise ProtocolError("unavailable", "the database has failed; edits are refused")
        if self.data_watch is not None:
            self.data_watch.check_writable()
            return
        assert self.db is not None
        if self.db.failure:
            raise ProtocolError("unavailable", "the database has failed; edits are refused")
        if self.task("writer").done():
            raise ProtocolError("unavailable", "the writer is not running; edits are refused")

    async def parsed(self, parse: Callable[[], T]) -> T:
        """`parse()` of a client's message or query: in a web process, once the data
        process has parsed the text conditions it holds."""
        return parse() if self.sql_trees is None else await self.sql_trees.parse(parse)

    def task(self, name: str) -> asyncio.Task[None]:
        return next(task for task in self.tasks if task.get_name() == name)

    async def submit_import(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An import goes through the writer like any request (it may take a while)."""
        assert self.submitter is not None
        user = spec.get("user", "admin")
        return await self.submitter.submit(ImportSpec.parse(spec), user, IMPORT_WAIT)

    async def close_sessions(self, code: int = 1001, reason: str = "server going away") -> None:
        self.closing = True
        closing = [session.close(code, reason, wait=2.0) for session in list(self.sessions)]
        await asyncio.gather(*closing)

    @classmethod
    async def start(cls, settings: Settings, auth: Authenticator, role: Role = "all") -> Services:
        """Start the parts of one role."""
        if role == "web":
            return await cls._start_web(settings, auth)
        # DuckDB, numpy and the writer are imported only by the processes that run them
        from server.data_role import start_data

        return await start_data(settings, auth, role)

    async def publish_address(self, address: DataAddress) -> None:
        """Tell web processes where this data process serves its reads, until stopped."""
        self.data_address = address
        await publish(self.redis, address)  # known before anyone hears this process is ready
        publishing = keep_published(self.redis, address, self._stopping)
        self.tasks.append(asyncio.create_task(publishing, name="data-address"))

    @classmethod
    async def _start_web(cls, settings: Settings, auth: Authenticator) -> Services:
        if settings.redis_url is None:
            raise SystemExit("a web process needs REDIS_URL (the data process's Redis)")
        redis = connect(settings.redis_url, settings.redis_connections)
        reads = RemoteReads(redis)
        hub = Hub(redis)
        services = cls(settings, None, redis, hub, None, reads, "web", auth)
        services.data_watch = DataWatch(reads)
        TREES.fetch = reads.sql_tree
        services.sql_trees = TREES
        await services.data_watch.refresh()  # a data process that runs is known at once
        await hub.prime()
        services.tasks = [
            asyncio.create_task(hub.run(), name="hub"),
            asyncio.create_task(services.data_watch.run(services._stopping), name="data-watch"),
            asyncio.create_task(hub.presence.run(services._stopping), name="presence"),
            asyncio.create_task(services._sample_process(), name="metrics-sampler"),
        ]
        return services

    async def _writer_ready(self) -> None:
        """Serve only once the writer holds its working state (or fail as it failed)."""
        assert self.writer is not None
        ready = asyncio.create_task(self.writer.ready.wait())
        writer = self.task("writer")
        await asyncio.wait([ready, writer], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self.stop()
            writer.result()  # raises what stopped the writer
            raise RuntimeError("the writer stopped before it was ready")

    async def _sample_process(self) -> None:
        """Keep this process's RSS gauge fresh for scrapes served by another process."""
        while not self._stopping:
            metrics.sample_process()
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def _watch_redis(self) -> None:
        """Restart the embedded redis-server if it dies; it reloads its AOF, and the
        writer and hub reconnect on their own."""
        assert self.embedded is not None
        while not self._stopping.is_set():
            await asyncio.sleep(WATCH_INTERVAL)
            if not self.embedded.running and not self._stopping.is_set():
                log.warning("embedded redis-server exited; restarting it")
                try:
                    # on the loop's (main) thread so the child still dies with this process
                    self.embedded.start()
                except EmbeddedRedisError as exc:
                    log.error("could not restart the embedded redis-server: %s", exc)

    async def stop(self) -> None:
        self._stopping.set()
        if self.writer is not None:
            self.writer.stop()
        if self.hub is not None:
            self.hub.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(task, timeout=10)
        if self.data_address is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await withdraw(self.redis, self.data_address)
        if isinstance(self.reads, RemoteReads):
            await self.reads.close()
        await self.redis.aclose()
        if self.writer is not None:
            await self.writer.redis.aclose()
        if self.submitter is not None:
            self.submitter.enqueuer.close()
        if self.db is not None:
            await asyncio.to_thread(self.db.close)
        if self.embedded is not None:
            self.embedded.stop()
