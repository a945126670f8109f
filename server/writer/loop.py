"""The writer: reads request_duck in batches, decides them in memory, publishes each
batch to response_duck at once and hands its effects to the persister (DESIGN §1, §6).

No DuckDB statement lies between reading a batch and publishing it, except for
barrier requests (condition edits, product and customer edits, imports): for those
the writer waits until the persister caught up, applies the request in DuckDB as one
transaction, publishes it and reloads its working state.

Recovery: the state is loaded from DuckDB (`_applied`), the journal entries after it
are decided again, and only what lies beyond the newest response_duck entry is
published; deciding is deterministic, so nothing published is ever contradicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import duckdb
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from protocol.actions import action_version
from protocol.codec import NO_SEQ, dumps, loads, parse_seq
from protocol.entries import entry_fields
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL, CreateVersion, LockVersion
from server import metrics
from server.config import Settings
from server.store.db import Database
from server.store.link import Command, RedisLink, read_streams
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
    newest_seq,
)
from server.writer.apply import apply_requests
from server.writer.batch import Limits
from server.writer.before_image import prepare
from server.writer.cell_ids import CellIds
from server.writer.decide import Decider, Request, is_interactive
from server.writer.effects import Effects, Groups, absorb
from server.writer.persister import Persister, announce
from server.writer.ranges import OVERFLOWS, OutOfRange
from server.writer.versions import (
    BARRIER_IN_VERSION,
    Loaded,
    decide_in,
    decider_for,
    load_versions,
    refusal,
    runs_by_version,
    set_published,
)

log = logging.getLogger("ducksheet.writer")

Entry = tuple[bytes, dict[bytes, bytes]]  # a request_duck entry: id, fields

MAX_ATTEMPTS = 3  # tries of a barrier request that makes DuckDB raise, before dead-lettering


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
        group_commit: float = Settings.group_commit_ms / 1000,
    ) -> None:
        self.db = db
        self.group_commit = group_commit  # seconds between group commits under load
        self.redis = redis
        self.link = RedisLink(redis)  # journal reads and publishes, one at a time
        self.limits = limits
        self.batch_size = batch_size
        self.retention = retention
        self.consumer = consumer
        self.applied_requests = 0
        self.batches = 0
        self.decide_seconds: list[float] = []  # recent batches, for /healthz and the bench
        self.versions: dict[str, Loaded] = {}  # each version's decider, once loaded
        self.persister: Persister | None = None
        self.decided: str | None = None  # the last request decided (maybe not persisted)
        self.ready = asyncio.Event()  # set once the working state is loaded
        self._stopping = asyncio.Event()
        self._replay_until: str | None = None  # published before a restart: decide silently
        self._silent: Groups = {}  # effects of silently re-decided requests
        self._persisting: asyncio.Task[None] | None = None
        # decided, not yet published: its seq, response entry and effects
        self._unpublished: tuple[str, dict[bytes, bytes], Effects] | None = None

    @property
    def decider(self) -> Decider | None:
        """Actual's decider (every decider's `published` is the same)."""
        loaded = self.versions.get(ACTUAL)
        return loaded.decider if loaded else None

    @property
    def last_applied(self) -> str | None:
        """The last seq decided and published."""
        return self.decider.published if self.decider else None

    def stop(self) -> None:
        """Finish the batch in hand, publish it, persist everything, then return."""
        self._stopping.set()

    async def run(self) -> None:
        await self.db.write(prepare)
        self.versions = await self.db.write(load_versions, self.limits)
        for name, loaded in self.versions.items():
            state = loaded.decider.state
            log.info(
                "working state of %s loaded: %s sales rows, %s cells, %.0f MB of columns",
                name,
                f"{len(state.sales.sale_id):,}",
                f"{len(state.summary):,}",
                state.memory_bytes() / 1e6,
            )
        applied = self.versions[ACTUAL].decider.state.applied
        self.decided = applied
        self.persister = Persister(
            self.db, self.redis, applied, self._cell_ids(), self.group_commit
        )
        self._persisting = asyncio.create_task(self._persist(), name="persister")
        self.ready.set()
        try:
            await self._serve_until_stopped()
        finally:
            await self._finish_publishing_quietly()
            self.persister.stop()
            await self._persisting
            self.link.close()

    async def _persist(self) -> None:
        assert self.persister is not None
        try:
            await self.persister.run()
        except (duckdb.Error, OSError) as exc:
            self._fail(f"persisting failed: {exc}")
            with contextlib.suppress(*REDIS_ERRORS):  # `?wait` answers now, not at its deadline
                await announce(self.redis, self.persister.persisted or NO_SEQ, self.db.failure)

    def _fail(self, why: str) -> None:
        self.db.failure = why
        self._stopping.set()
        log.error("DuckDB failed; the writer stops and edits stay queued: %s", why)

    async def _serve_until_stopped(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._serve()
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                metrics.redis_reconnect("writer")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing (redis lost its data?); recreating it")
            else:
                backoff = 0.1

    async def _serve(self) -> None:
        assert self.decider is not None
        await ensure_group(self.redis)
        await self._republish_outbox()
        if self._unpublished is not None:  # Redis failed while it was being published
            await self._publish_decided()
        assert self.persister is not None
        await self.persister.resume()
        newest = await newest_seq(self.redis)
        if self.decider.published is None or (
            newest is not None and later(newest, self.decider.published)
        ):
            self._replay_until = newest  # decided before a restart: already published
            set_published(self.versions, newest)
        cursor = "0"  # first our own pending entries (delivered, not yet persisted)
        entries = await self._read(cursor, None)
        while not self._stopping.is_set():
            if entries:
                await self._handle(entries)
            elif cursor == "0":
                cursor = ">"
                self._end_replay()
            block = BLOCK_MS if not entries and cursor == ">" else None
            entries = await self._read(cursor, block)
        await self._finish_publishing()

    async def _read(self, cursor: str, block: int | None) -> list[Entry]:
        """The next journal entries. The batch decided last is published in the same
        round trip, or first when the read may block (an idle writer publishes first)."""
        if cursor == "0" and self.decided is not None:
            cursor = self.decided  # pending entries after what was decided already
        command = ["XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", self.batch_size]
        if block is not None:
            await self._finish_publishing()
            command += ["BLOCK", block]
        read = (*command, "STREAMS", REQUESTS, cursor)
        if self._unpublished is None:
            (reply,) = await self.link.execute(read)
        else:
            reply = await self._publish_decided(read)
        if isinstance(reply, ResponseError):
            raise reply
        streams = read_streams(reply)
        return streams[0][1] if streams else []

    async def _handle(self, entries: list[Entry]) -> None:
        metrics.batch_read(len(entries))
        requests, failed = self._decode(entries)
        run: list[Request] = []
        for request in requests:
            if not is_interactive(request.action) and action_version(request.action) != ACTUAL:
                failed[request.id] = ProtocolError("bad_message", BARRIER_IN_VERSION)
            if is_interactive(request.action) or request.id in failed:
                run.append(request)
                continue
            if run:
                await self._decide(run, failed)
                run = []
            await self._barrier(request)
            if self._stopping.is_set():
                return
        if run:
            await self._decide(run, failed)

    def _cell_ids(self) -> dict[str | None, CellIds]:
        return {each.version.schema: each.cell_ids for each in self.versions.values()}

    def _decode(self, entries: list[Entry]) -> tuple[list[Request], dict[str, ProtocolError]]:
        """Requests not yet decided; those whose body does not parse are rejected."""
        requests: list[Request] = []
        malformed: dict[str, ProtocolError] = {}
        for raw_id, fields in entries:
            request_id = raw_id.decode()
            if not later(request_id, self.decided):
                continue
            try:
                action, sender = decode_request(fields)
            except ProtocolError as exc:
                malformed[request_id] = exc
                requests.append(Request(request_id, None, "?"))
                continue
            requests.append(Request(request_id, action, sender.user, sender.ref, sender.admin))
        return requests, malformed

    async def _decide(self, requests: list[Request], failed: dict[str, ProtocolError]) -> None:
        """Decide a run of interactive requests, version by version."""
        for version, run in runs_by_version(requests):
            await self._decide_version(version, run, failed)

    async def _decide_version(
        self, version: str, requests: list[Request], failed: dict[str, ProtocolError]
    ) -> None:
        """Decide a run of one version; publish what was not published before."""
        assert self.persister is not None
        refused = refusal(self.versions, version)
        if refused is not None:
            failed.update(dict.fromkeys((r.id for r in requests), refused))
        loaded = decider_for(self.versions, version)
        decider = loaded.decider
        silent = [r for r in requests if not later(r.id, self._replay_until)]
        if silent:
            published = decider.published
            _, effects = decide_in(loaded, silent, failed)
            decider.published = published
            self._collect_silent(effects)
            requests = requests[len(silent) :]
        if not requests:
            return
        self._end_replay()
        started = time.perf_counter()
        payload, effects = decide_in(loaded, requests, failed, defer=True)
        set_published(self.versions, payload["seq"])
        fields = entry_fields(payload)
        elapsed = time.perf_counter() - started
        self.decide_seconds = [*self.decide_seconds[-999:], elapsed]
        metrics.decide_seconds(elapsed)
        metrics.requests_decided(payload["results"])
        self.decided = payload["seq"]
        self.applied_requests += len(requests)
        log.debug(
            "batch decided",
            extra={
                "first": requests[0].id,
                "last": requests[-1].id,
                "requests": len(requests),
                "seqs": [payload["seq"]],
            },
        )
        await self._finish_publishing()
        self._unpublished = (payload["seq"], fields, effects)

    async def _publish_decided(self, read: Command | None = None) -> Any:
        """Publish the batch decided last, then hand it to the persister: DuckDB never
        holds a decision response_duck lacks (recovery re-decides only after `_applied`,
        so one persisted unpublished would never reach a socket). A batch whose publish
        failed is published again before anything else is read. `read` goes out in the
        same round trip; its reply is returned."""
        assert self._unpublished is not None and self.persister is not None
        seq, fields, effects = self._unpublished
        reply = await self._publish(seq, fields, read=read)
        self._unpublished = None
        with metrics.stopwatch() as elapsed:  # rows a block left to spread: effects complete
            spread = [loaded.decider.finish() for loaded in self.versions.values()]
        if any(spread):
            metrics.rows_after_publish_seconds(elapsed[0])
        self.persister.add(effects)
        return reply

    def _collect_silent(self, effects: Effects) -> None:
        """Re-decided requests are persisted as one group ending at the last published
        seq, so `_applied` always names a seq that response_duck holds."""
        self.decided = effects.last_id
        absorb(self._silent, effects)

    def _end_replay(self) -> None:
        if self._silent and self.persister is not None:
            count = sum(len(effects.ids) for effects in self._silent.values())
            log.info("re-decided %d requests published before a restart", count)
            self.persister.add(self._silent)
            self._silent = {}
        self._replay_until = None

    async def _barrier(self, request: Request) -> None:
        """A request applied in DuckDB: persist everything first, then apply, publish,
        and reload the working state from what DuckDB now holds."""
        assert self.decider is not None and self.persister is not None
        self._end_replay()
        await self._finish_publishing()
        await self.persister.drain()
        published = self.decider.published
        try:
            seq, fields, dead = await self.db.write(self._apply_alone, request, published)
        except DatabaseFailed as exc:
            self._fail(str(exc))
            return
        self.decided = seq
        self.applied_requests += 1
        if dead is not None:
            body = dead.pop("body")
            await self.redis.xadd(DEAD_LETTERS, {FIELD: body, b"why": dumps(dead)})
        set_published(self.versions, seq)
        await self._publish(seq, fields, barrier=request.id)
        await self.persister.covered(seq)
        reload = not isinstance(request.action, CreateVersion | LockVersion)
        self.versions = await self.db.write(load_versions, self.limits, self.versions, reload)
        set_published(self.versions, seq)
        self.persister.cell_ids = self._cell_ids()

    def _apply_alone(
        self, con: duckdb.DuckDBPyConnection, request: Request, published: str | None
    ) -> tuple[str, dict[bytes, bytes], dict[str, Any] | None]:
        """One barrier request in its own transaction, tried MAX_ATTEMPTS times; then it
        is recorded as rejected (`internal`) and goes to the dead-letter stream."""
        failed: dict[str, ProtocolError] = {}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return (*self._attempt(con, request, failed, published), None)
            except OutOfRange as exc:  # a client's mistake: rejected, nothing to retry
                failed = {request.id: exc}
                return (*self._attempt(con, request, failed, published), None)
            except OVERFLOWS as exc:  # DuckDB found what the range checks did not
                log.warning("request %s overflows a column: %s", request.id, exc)
                failed = {request.id: OutOfRange("the change would take a value out of range")}
                return (*self._attempt(con, request, failed, published), None)
            except duckdb.Error as exc:
                log.error("request %s failed (attempt %d): %s", request.id, attempt, exc)
                error = exc
        why = f"the database could not apply this request: {error}"
        message = f"the database could not apply this request (see {DEAD_LETTERS})"
        failed = {request.id: ProtocolError("internal", message)}
        seq, fields = self._attempt(con, request, failed, published)
        body = dumps(request.action.as_dict()) if request.action is not None else b""
        return (
            seq,
            fields,
            {"request": request.id, "error": why, "attempts": MAX_ATTEMPTS, "body": body},
        )

    def _attempt(
        self,
        con: duckdb.DuckDBPyConnection,
        request: Request,
        failed: dict[str, ProtocolError],
        published: str | None,
    ) -> tuple[str, dict[bytes, bytes]]:
        """The request applied in DuckDB: its seq and response entry (its payload is kept
        in the outbox in the same transaction)."""
        try:
            payload = apply_requests(con, [request], self.limits, failed, published)
        except (duckdb.FatalException, duckdb.InternalException) as exc:
            raise DatabaseFailed(str(exc)) from exc
        except duckdb.Error as exc:
            if "invalidated" in str(exc):
                raise DatabaseFailed(str(exc)) from exc
            raise
        metrics.requests_decided(payload["results"])
        return payload["seq"], entry_fields(payload)

    async def _finish_publishing(self) -> None:
        """Publish the batch decided last, if it is not yet."""
        if self._unpublished is not None:
            await self._publish_decided()

    async def _finish_publishing_quietly(self) -> None:
        try:
            await self._finish_publishing()
        except REDIS_ERRORS as exc:
            log.warning("the last batch was not published (%s); it is re-decided", exc)

    async def _publish(
        self,
        seq: str,
        fields: dict[bytes, bytes],
        barrier: str | None = None,
        read: Command | None = None,
    ) -> Any:
        """XADD the entry (an explicit id: publishing twice is harmless); `read` in the
        same round trip, whose reply is returned."""
        flat = [part for field in fields.items() for part in field]
        commands = [("XADD", RESPONSES, "MAXLEN", "~", self.retention, seq, *flat)]
        if barrier is not None:  # DuckDB holds it already
            commands.append(("XACK", REQUESTS, GROUP, barrier))
        replies = await self.link.execute(*commands, *([read] if read else []))
        for reply in replies[: len(commands)]:
            if isinstance(reply, Exception) and "equal or smaller" not in str(reply):
                raise reply
        self.batches += 1
        if barrier is not None:
            await self.db.write(_forget_outbox)
        return replies[-1] if read else None

    async def _republish_outbox(self) -> None:
        """Barrier results DuckDB committed but a crash kept from response_duck."""
        unpublished = sorted(await self.db.write(_read_outbox), key=lambda r: parse_seq(r[0]))
        for seq, request_ids, payload in unpublished:
            try:
                await self.redis.xadd(RESPONSES, entry_fields(loads(payload)), id=seq)
                log.info("republished %s from the outbox", seq)
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
            await self.redis.xack(REQUESTS, GROUP, *request_ids)
        if unpublished:
            await self.db.write(_forget_outbox)


def _read_outbox(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], str]]:
    return con.execute("SELECT seq, requests, payload FROM _outbox").fetchall()


def _forget_outbox(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM _outbox")
