"""The writer: drains request_duck in batches into DuckDB and publishes the results.

One task per database file. Each batch is applied in one DuckDB transaction (see
server.apply), then published to response_duck under the id of its last request
(an explicit id, so publishing twice is harmless), then acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import duckdb
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from protocol.codec import dumps
from protocol.errors import ProtocolError
from server.apply import Limits, Request, apply_batch, last_applied, prepare
from server.db import Database
from server.streams import (
    BLOCK_MS,
    FIELD,
    GROUP,
    REDIS_ERRORS,
    REQUESTS,
    RESPONSES,
    decode_request,
    ensure_group,
    later,
)

log = logging.getLogger("ducksheet.writer")


class Writer:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        limits: Limits,
        batch_size: int = 2000,
        retention: int = 100_000,
        consumer: str = "writer-1",
    ) -> None:
        self.db = db
        self.redis = redis
        self.limits = limits
        self.batch_size = batch_size
        self.retention = retention
        self.consumer = consumer
        self.last_applied: str | None = None
        self.applied_requests = 0
        self.batches = 0
        self._published: list[str] = []  # outbox rows to delete in the next transaction
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the batch in hand, publish it, then return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        await self.db.write(prepare)
        self.last_applied = await self.db.write(last_applied)
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._serve()
                return
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _serve(self) -> None:
        await ensure_group(self.redis)
        await self._republish_outbox()
        cursor = "0"  # first our own pending entries (delivered, never acknowledged)
        while not self._stopping.is_set():
            reply = await self.redis.xreadgroup(
                GROUP,
                self.consumer,
                {REQUESTS: cursor},
                count=self.batch_size,
                block=None if cursor == "0" else BLOCK_MS,
            )
            entries = reply[0][1] if reply else []
            if cursor == "0" and not entries:
                cursor = ">"
                continue
            if entries:
                await self._handle(entries)

    async def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        ids = [entry_id.decode() for entry_id, _ in entries]
        requests, malformed = self._decode(entries)
        if requests:
            payloads = await self.db.write(self._apply, requests, malformed)
            for payload in payloads:
                await self._publish(payload)
                self.last_applied = payload["seq"]
                self.batches += 1
            self.applied_requests += len(requests)
        await self.redis.xack(REQUESTS, GROUP, *ids)

    def _decode(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]]
    ) -> tuple[list[Request], dict[str, ProtocolError]]:
        """Requests not yet applied; those whose body does not parse are rejected."""
        requests: list[Request] = []
        malformed: dict[str, ProtocolError] = {}
        for raw_id, fields in entries:
            request_id = raw_id.decode()
            if not later(request_id, self.last_applied):
                continue  # applied before a crash, not yet acknowledged
            try:
                action, user, ref = decode_request(fields)
            except ProtocolError as exc:
                malformed[request_id] = exc
                requests.append(Request(request_id, None, "?"))
                continue
            requests.append(Request(request_id, action, user, ref))
        return requests, malformed

    def _apply(
        self, con: duckdb.DuckDBPyConnection, requests: list[Request], failed: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Payloads of the committed transactions, in order: one for the whole batch, or
        one per request when DuckDB raised and the batch was split to isolate the cause."""
        published, self._published = self._published, []
        try:
            return [apply_batch(con, requests, self.limits, failed, published)]
        except duckdb.Error as exc:
            if len(requests) == 1:
                log.error("request %s failed in DuckDB: %s", requests[0].id, exc)
                failed = {**failed, requests[0].id: ProtocolError("internal", str(exc))}
                return [apply_batch(con, requests, self.limits, failed, published)]
            log.warning("batch of %d failed (%s); applying one by one", len(requests), exc)
            self._published = published
            return [p for r in requests for p in self._apply(con, [r], failed)]

    async def _publish(self, payload: dict[str, Any]) -> None:
        try:
            await self.redis.xadd(
                RESPONSES,
                {FIELD: dumps(payload)},
                id=payload["seq"],
                maxlen=self.retention,
                approximate=True,
            )
        except ResponseError as exc:
            if "equal or smaller" not in str(exc):
                raise
        self._published.append(payload["seq"])

    async def _republish_outbox(self) -> None:
        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], str]]:
            return con.execute("SELECT seq, requests, payload FROM _outbox ORDER BY seq").fetchall()

        for seq, request_ids, payload in await self.db.write(read):
            try:
                await self.redis.xadd(RESPONSES, {FIELD: payload.encode()}, id=seq)
                log.info("republished %s from the outbox", seq)
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
            self._published.append(seq)
            await self.redis.xack(REQUESTS, GROUP, *request_ids)
