"""The writer: drains request_duck in batches into DuckDB and publishes the results.

One task per database file. Each batch is applied in one DuckDB transaction (see
server.writer.apply), then published to response_duck under the id of its last request
(an explicit id, so publishing twice is harmless), then acknowledged, in one Redis round
trip that overlaps with reading and applying the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import duckdb
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from protocol.codec import dumps, parse_seq
from protocol.errors import ProtocolError
from server import metrics
from server.config import Settings
from server.store.db import Database
from server.store.streams import (
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
from server.writer.apply import Request, apply_and_encode, last_applied
from server.writer.batch import Limits
from server.writer.before_image import prepare
from server.writer.known import Known
from server.writer.ranges import OVERFLOWS, OutOfRange

log = logging.getLogger("ducksheet.writer")

Entry = tuple[bytes, dict[bytes, bytes]]  # a request_duck entry: id, fields

MAX_ATTEMPTS = 3  # tries of a request that makes DuckDB raise, before it is dead-lettered
TRIM_EVERY = 50  # batches between trims of request_duck below the last applied id
# Published outbox rows are deleted in a later transaction once this many piled up: a
# DELETE per batch costs more than the rare republish of a few rows after a crash.
OUTBOX_DELETE_AT = 20


class DatabaseFailed(Exception):
    """DuckDB can no longer be written: the writer stops rather than lose edits."""


class Writer:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        limits: Limits,
        batch_size: int = Settings.batch_size,
        retention: int = Settings.response_retention,
        consumer: str = "writer-1",
    ) -> None:
        self.db = db
        self.redis = redis
        self.limits = limits
        self.batch_size = batch_size
        self.retention = retention
        self.consumer = consumer
        self.last_applied: str | None = None  # committed in DuckDB (maybe not yet published)
        self.applied_requests = 0
        self.batches = 0
        self._untrimmed = 0  # batches since request_duck was last trimmed
        self.known = Known()  # what earlier batches learned about the database
        self._published: list[str] = []  # outbox rows to delete in a later transaction
        self._dead: list[dict[str, Any]] = []  # requests to move to the dead-letter stream
        self._stopping = asyncio.Event()
        self._publishing: asyncio.Task[None] | None = None  # the batch being published

    def stop(self) -> None:
        """Finish the batch in hand, publish it, then return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        await self.db.write(prepare)
        self.last_applied = await self.db.write(last_applied)
        await self.db.write(self.known.summary_cells)  # read now, not in the first batch
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._serve()
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                metrics.redis_reconnect("writer")  # metrics
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
        try:
            entries = await self._read(cursor, None)
            while not self._stopping.is_set():
                if entries:
                    await self._handle(entries)
                elif cursor == "0":
                    cursor = ">"
                if cursor == "0" or not entries:
                    # Pending entries stay pending until acknowledged, and an idle writer
                    # publishes before it blocks.
                    await self._finish_publishing()
                block = BLOCK_MS if not entries and cursor == ">" else None
                entries = await self._read(cursor, block)
            await self._finish_publishing()
        finally:
            if self._publishing is not None:  # Redis failed: the outbox keeps its payloads
                self._publishing.cancel()
                self._publishing = None

    async def _read(self, cursor: str, block: int | None) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            GROUP, self.consumer, {REQUESTS: cursor}, count=self.batch_size, block=block
        )
        return reply[0][1] if reply else []

    async def _handle(self, entries: list[Entry]) -> None:
        """Apply a batch, then publish and acknowledge it in the background: the next
        batch is read and applied meanwhile (publishing stays in order)."""
        published = list(self._published) if len(self._published) >= OUTBOX_DELETE_AT else []
        metrics.batch_read(len(entries))  # metrics
        started = time.perf_counter()  # metrics
        try:
            payloads, decided = await self.db.write(self._apply, entries, published)
        except DatabaseFailed as exc:
            self.db.failure = str(exc)
            self._stopping.set()
            log.error("DuckDB failed; the writer stops and edits stay queued: %s", exc)
            return
        if payloads:
            # Committed: never apply these again, even if publishing fails below and
            # their entries come back unacknowledged.
            self.last_applied = payloads[-1][0]
            if published:
                self._published = self._published[len(published) :]
        self.applied_requests += decided
        metrics.persist_seconds(time.perf_counter() - started, decided)  # metrics
        log.debug(
            "batch decided",
            extra={
                "first": entries[0][0].decode(),
                "last": entries[-1][0].decode(),
                "requests": decided,
                "seqs": [seq for seq, _ in payloads],
            },
        )  # logs
        await self._dead_letter(entries)
        await self._finish_publishing()
        ids = [entry_id for entry_id, _ in entries]
        self._publishing = asyncio.create_task(self._publish(payloads, ids))

    async def _finish_publishing(self) -> None:
        """Wait for the batch being published; its Redis errors surface here."""
        task, self._publishing = self._publishing, None
        if task is not None:
            await task

    def _apply(
        self, con: duckdb.DuckDBPyConnection, entries: list[Entry], published: list[str]
    ) -> tuple[list[tuple[str, str]], int]:
        """(seq, payload JSON) of each committed transaction in order, and the number of
        requests decided. One transaction for the batch or, when DuckDB raised, one per
        request so that only the culprit is rejected. Runs on the database thread, so
        parsing the requests does not hold up the event loop either."""
        requests, failed = self._decode(entries)
        if not requests:
            return [], 0
        try:
            return [self._attempt(con, requests, failed, published)], len(requests)
        except OutOfRange:  # one of them would overflow a column: find it
            log.info(
                "a request of a batch of %d is out of range; applying one by one", len(requests)
            )
        except duckdb.Error as exc:
            log.warning("batch of %d failed (%s); applying one by one", len(requests), exc)
        payloads = [
            self._apply_alone(con, r, failed, published if i == 0 else [])
            for i, r in enumerate(requests)
        ]
        return payloads, len(requests)

    def _decode(self, entries: list[Entry]) -> tuple[list[Request], dict[str, ProtocolError]]:
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

    def _apply_alone(
        self,
        con: duckdb.DuckDBPyConnection,
        request: Request,
        failed: dict[str, Any],
        published: list[str],
    ) -> tuple[str, str]:
        """One request in its own transaction, tried MAX_ATTEMPTS times; then it is
        recorded as rejected (`internal`) and queued for the dead-letter stream."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._attempt(con, [request], failed, published)
            except OutOfRange as exc:  # a client's mistake: rejected, nothing to retry
                return self._attempt(con, [request], {**failed, request.id: exc}, published)
            except OVERFLOWS as exc:  # DuckDB found what the range checks did not
                log.warning("request %s overflows a column: %s", request.id, exc)
                rejected = OutOfRange("the change would take a value out of its column's range")
                return self._attempt(con, [request], {**failed, request.id: rejected}, published)
            except duckdb.Error as exc:
                log.error("request %s failed (attempt %d): %s", request.id, attempt, exc)
                error = exc
        # The dead-letter entry keeps DuckDB's words; the client gets none of its SQL.
        why = f"the database could not apply this request: {error}"
        self._dead.append({"request": request.id, "error": why, "attempts": MAX_ATTEMPTS})
        message = f"the database could not apply this request (see {DEAD_LETTERS})"
        failed = {**failed, request.id: ProtocolError("internal", message)}
        return self._attempt(con, [request], failed, published)

    def _attempt(
        self,
        con: duckdb.DuckDBPyConnection,
        requests: list[Request],
        failed: dict[str, Any],
        published: list[str],
    ) -> tuple[str, str]:
        try:
            payload, encoded = apply_and_encode(
                con, requests, self.limits, failed, published, self.known
            )
        except (duckdb.FatalException, duckdb.InternalException) as exc:
            raise DatabaseFailed(str(exc)) from exc
        except duckdb.Error as exc:
            if "invalidated" in str(exc):
                raise DatabaseFailed(str(exc)) from exc
            raise
        metrics.requests_decided(payload["results"])  # metrics
        return payload["seq"], encoded

    async def _dead_letter(self, entries: list[Entry]) -> None:
        if not self._dead:
            return
        bodies = {entry_id.decode(): fields for entry_id, fields in entries}
        for dead in self._dead:
            body = bodies.get(dead["request"], {}).get(FIELD, b"")
            await self.redis.xadd(DEAD_LETTERS, {FIELD: body, b"why": dumps(dead)})
        self._dead.clear()

    async def _publish(self, payloads: list[tuple[str, str]], ids: list[bytes]) -> None:
        """XADD the payloads (in order) and XACK the batch, pipelined: Redis runs them in
        this order, so nothing is acknowledged before it was published (and the outbox
        still holds a payload whose XADD failed, for a republish)."""
        pipe = self.redis.pipeline(transaction=False)
        for seq, encoded in payloads:
            pipe.xadd(
                RESPONSES,
                {FIELD: encoded.encode()},
                id=seq,
                maxlen=self.retention,
                approximate=True,
            )
        pipe.xack(REQUESTS, GROUP, *ids)
        self._untrimmed += len(payloads)
        if self._untrimmed >= TRIM_EVERY and payloads:
            # everything up to this batch is applied, and acknowledged just above
            pipe.xtrim(REQUESTS, minid=payloads[-1][0], approximate=True)
            self._untrimmed = 0
        replies = await pipe.execute(raise_on_error=False)
        for (seq, _), reply in zip(payloads, replies, strict=False):
            if isinstance(reply, Exception) and "equal or smaller" not in str(reply):
                raise reply
            self._published.append(seq)
        for reply in replies[len(payloads) :]:
            if isinstance(reply, Exception):
                raise reply
        self.batches += len(payloads)

    async def _republish_outbox(self) -> None:
        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], str]]:
            return con.execute("SELECT seq, requests, payload FROM _outbox").fetchall()

        unpublished = sorted(await self.db.write(read), key=lambda row: parse_seq(row[0]))
        for seq, request_ids, payload in unpublished:
            try:
                await self.redis.xadd(RESPONSES, {FIELD: payload.encode()}, id=seq)
                log.info("republished %s from the outbox", seq)
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
            self._published.append(seq)
            await self.redis.xack(REQUESTS, GROUP, *request_ids)
