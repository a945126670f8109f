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
    DEAD_LETTERS,
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


MAX_ATTEMPTS = 3  # tries of a request that makes DuckDB raise, before it is dead-lettered
TRIM_EVERY = 50  # batches between trims of request_duck below the last applied id


class DatabaseFailed(Exception):
    """DuckDB can no longer be written: the writer stops rather than lose edits."""


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
        self._dead: list[dict[str, Any]] = []  # requests to move to the dead-letter stream
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
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing (redis lost its data?); recreating it")
            else:
                backoff = 0.1

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
            try:
                payloads = await self.db.write(self._apply, requests, malformed)
            except DatabaseFailed as exc:
                self.db.failure = str(exc)
                self._stopping.set()
                log.error("DuckDB failed; the writer stops and edits stay queued: %s", exc)
                return
            await self._dead_letter(entries)
            for payload in payloads:
                await self._publish(payload)
                self.last_applied = payload["seq"]
                self.batches += 1
            self.applied_requests += len(requests)
        await self.redis.xack(REQUESTS, GROUP, *ids)
        if self.batches % TRIM_EVERY == 0 and self.last_applied:
            # everything at or below the last applied id is applied and acknowledged
            await self.redis.xtrim(REQUESTS, minid=self.last_applied, approximate=True)

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
        """Payloads of the committed transactions, in order: one for the whole batch, or,
        when DuckDB raised, one per request so that only the culprit is rejected."""
        published, self._published = self._published, []
        try:
            return [self._attempt(con, requests, failed, published)]
        except duckdb.Error as exc:
            log.warning("batch of %d failed (%s); applying one by one", len(requests), exc)
        payloads = [
            self._apply_alone(con, r, failed, published if i == 0 else [])
            for i, r in enumerate(requests)
        ]
        return payloads

    def _apply_alone(
        self,
        con: duckdb.DuckDBPyConnection,
        request: Request,
        failed: dict[str, Any],
        published: list[str],
    ) -> dict[str, Any]:
        """One request in its own transaction, tried MAX_ATTEMPTS times; then it is
        recorded as rejected (`internal`) and queued for the dead-letter stream."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._attempt(con, [request], failed, published)
            except duckdb.Error as exc:
                log.error("request %s failed (attempt %d): %s", request.id, attempt, exc)
                error = exc
        message = f"the database could not apply this request: {error}"
        self._dead.append({"request": request.id, "error": message, "attempts": MAX_ATTEMPTS})
        failed = {**failed, request.id: ProtocolError("internal", message)}
        return self._attempt(con, [request], failed, published)

    def _attempt(
        self,
        con: duckdb.DuckDBPyConnection,
        requests: list[Request],
        failed: dict[str, Any],
        published: list[str],
    ) -> dict[str, Any]:
        try:
            return apply_batch(con, requests, self.limits, failed, published)
        except (duckdb.FatalException, duckdb.InternalException) as exc:
            raise DatabaseFailed(str(exc)) from exc
        except duckdb.Error as exc:
            if "invalidated" in str(exc):
                raise DatabaseFailed(str(exc)) from exc
            raise

    async def _dead_letter(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        bodies = {entry_id.decode(): fields for entry_id, fields in entries}
        for dead in self._dead:
            body = bodies.get(dead["request"], {}).get(FIELD, b"")
            await self.redis.xadd(DEAD_LETTERS, {FIELD: body, b"why": dumps(dead)})
        self._dead.clear()

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
