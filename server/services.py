"""The long-lived parts of a running server, started and stopped by the app lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from protocol.actions import ImportSpec
from protocol.errors import ProtocolError
from server import metrics
from server.config import Settings
from server.edge.auth import Authenticator
from server.edge.submit import Submitter
from server.hub.fanout import Hub
from server.store.db import Database
from server.store.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from server.store.streams import Enqueuer, connect, ensure_group
from server.writer.batch import Limits
from server.writer.loop import Writer

log = logging.getLogger("ducksheet")
WATCH_INTERVAL = 0.5  # seconds between checks that the embedded Redis still runs
SAMPLE_INTERVAL = 5.0  # seconds between samples of this process's memory (metrics)
IMPORT_WAIT = 600.0  # seconds an import request waits for the writer before answering 202


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    hub: Hub
    writer: Writer
    auth: Authenticator = field(default_factory=lambda: Authenticator({}))
    embedded: EmbeddedRedis | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sessions: set[Any] = field(default_factory=set)  # open WebSocket sessions
    submitter: Submitter = field(init=False)  # the edges' one way into request_duck
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.submitter = Submitter(Enqueuer(self.redis), self.hub, self.check_writable)

    def check_writable(self) -> None:
        """Refuse new edits while they could not be applied (answered as 503)."""
        if self.db.failure:
            raise ProtocolError("unavailable", "the database has failed; edits are refused")
        if self.task("writer").done():
            raise ProtocolError("unavailable", "the writer is not running; edits are refused")

    def task(self, name: str) -> asyncio.Task[None]:
        return next(task for task in self.tasks if task.get_name() == name)

    async def submit_import(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An import goes through the writer like any request (it may take a while)."""
        user = spec.get("user", "admin")
        return await self.submitter.submit(ImportSpec.parse(spec), user, IMPORT_WAIT)

    async def close_sessions(self, code: int = 1001, reason: str = "server going away") -> None:
        closing = [session.close(code, reason, wait=2.0) for session in list(self.sessions)]
        await asyncio.gather(*closing)

    @classmethod
    async def start(cls, settings: Settings, auth: Authenticator) -> Services:
        embedded = None
        url = settings.redis_url
        if url is None:
            embedded = EmbeddedRedis(settings.data_dir, settings.appendfsync)
            url = embedded.start()
            log.info("embedded redis-server started (pid %s)", embedded.pid)
        db = Database(settings.database_path, settings.read_threads)
        try:
            await asyncio.to_thread(db.open, settings.seed_sales, settings.seed)
            redis = connect(url, settings.redis_connections)
            await ensure_group(redis)
        except BaseException:
            db.close()
            if embedded is not None:
                embedded.stop()
            raise
        limits = Limits.of(settings)
        writer = Writer(db, redis, limits, settings.batch_size, settings.response_retention)
        hub = Hub(redis)
        services = cls(settings, db, redis, hub, writer, auth, embedded)
        services.tasks = [
            asyncio.create_task(writer.run(), name="writer"),
            asyncio.create_task(hub.run(), name="hub"),
            asyncio.create_task(services._sample_process(), name="metrics-sampler"),
        ]
        if embedded is not None:
            services.tasks.append(asyncio.create_task(services._watch_redis(), name="redis-watch"))
        return services

    async def _sample_process(self) -> None:
        """Keep this process's RSS gauge fresh for scrapes served by another process."""
        while not self._stopping:
            metrics.sample_process()
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def _watch_redis(self) -> None:
        """Restart the embedded redis-server if it dies; it reloads its AOF, and the
        writer and hub reconnect on their own."""
        assert self.embedded is not None
        while not self._stopping:
            await asyncio.sleep(WATCH_INTERVAL)
            if not self.embedded.running and not self._stopping:
                log.warning("embedded redis-server exited; restarting it")
                try:
                    # on the loop's (main) thread so the child still dies with this process
                    self.embedded.start()
                except EmbeddedRedisError as exc:
                    log.error("could not restart the embedded redis-server: %s", exc)

    async def stop(self) -> None:
        self._stopping = True
        self.writer.stop()
        self.hub.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(task, timeout=10)
        await self.redis.aclose()
        await asyncio.to_thread(self.db.close)
        if self.embedded is not None:
            self.embedded.stop()
