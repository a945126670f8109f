"""Redis streams: names, connection, enqueueing validated edits (pipelined)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from protocol.actions import Action, Sender, parse_request_body, request_body
from protocol.codec import loads, next_seq, parse_seq
from protocol.entries import FRAME, META, entry_frame, joined
from server.config import Settings
from server.store.link import RedisLink

REQUESTS = "request_duck"
RESPONSES = "response_duck"
PERSISTED = "persisted_duck"  # the last request DuckDB holds, after each group commit
DEAD_LETTERS = "request_duck_dead"  # requests DuckDB could not apply, with the error
GROUP = "writers"
FIELD = b"p"
BLOCK_MS = 1000  # blocking reads wake at least this often (stop flags, reconnects)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


POOL_WAIT = 5.0  # seconds a command waits for a free pooled connection before failing
WRITER_CONNECTIONS = 8  # the persister's acks, barriers, recovery: a few at once


def connect(
    url: str, max_connections: int = Settings.redis_connections, wait: bool = True
) -> aioredis.Redis:
    """A client whose pool holds at most `max_connections`; when all are busy (a burst of
    sockets resuming at once) a command waits for one instead of failing at once.
    Without `wait`, for a user that has a few commands out at most (the writer, an
    Enqueuer): the waiting pool's lock and timeout cost a fifth of a command's client
    CPU (a read and a publish ~540 against ~430 us in-process)."""
    # socket_timeout must exceed BLOCK_MS, or blocking reads time out client-side.
    pool_class = aioredis.BlockingConnectionPool if wait else aioredis.ConnectionPool
    waits = {"timeout": POOL_WAIT} if wait else {}
    pool = pool_class.from_url(
        url,
        max_connections=max_connections,
        decode_responses=False,
        protocol=2,  # classic stream reply shapes: [[name, [(id, fields)…]]]
        socket_timeout=BLOCK_MS / 1000 + 10,
        socket_connect_timeout=5,
        health_check_interval=30,
        **waits,
    )
    return aioredis.Redis.from_pool(pool)


async def ensure_group(r: aioredis.Redis) -> None:
    """Create the writers' consumer group (and the stream) unless it exists."""
    try:
        await r.xgroup_create(REQUESTS, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Enqueuer:
    """XADDs validated requests to request_duck, many per round trip.

    Requests that arrive while a pipeline is in flight wait for it and then go out
    together in the next one, in arrival order: one write and one read per loop tick
    for all sockets, instead of one round trip per edit.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.link = RedisLink(redis)
        self._waiting: list[tuple[bytes, asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def enqueue(self, action: Action, sender: Sender) -> str:
        """XADD one request; returns its request id (the acknowledgement)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((request_body(action, sender), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._send(batch)
        finally:
            self._flusher = None

    def close(self) -> None:
        self.link.close()

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[str]]]) -> None:
        try:
            commands = [("XADD", REQUESTS, "*", FIELD, body) for body, _ in batch]
            replies = await self.link.execute(*commands)
        except Exception as exc:  # Redis is unreachable: every sender hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its sender went away meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply.decode())


def decode_request(fields: dict[bytes, bytes]) -> tuple[Action, Sender]:
    """The action and sender of a request_duck entry; ProtocolError if malformed."""
    return parse_request_body(fields.get(FIELD, b"null"))


def later(a: str, b: str | None) -> bool:
    """Is stream id `a` after `b` (None counts as the beginning)?"""
    return b is None or parse_seq(a) > parse_seq(b)


async def entries_after(r: aioredis.Redis, since: str, limit: int) -> list[dict[str, Any]] | None:
    """Up to `limit` response payloads after `since`, oldest first, read exactly; None
    when `since` is not a retained entry (trimmed away, or not yet published): the
    caller must resync."""
    entries = await _retained_after(r, since, limit)
    return None if entries is None else [_payload(fields) for _, fields in entries]


async def frames_after(
    r: aioredis.Redis, since: str, limit: int
) -> list[tuple[str, bytes | None]] | None:
    """As `entries_after`, each entry as its seq and the `updates` frame sockets are
    sent for it (None: it changed nothing), the writer's bytes as they are."""
    entries = await _retained_after(r, since, limit)
    if entries is None:
        return None
    return [(entry_id.decode(), entry_frame(fields)) for entry_id, fields in entries]


async def _retained_after(
    r: aioredis.Redis, since: str, limit: int
) -> list[tuple[bytes, dict[bytes, bytes]]] | None:
    wanted = parse_seq(since)
    after = next_seq(since)  # not "(since": that fails on the largest id there can be
    if after is None:
        return None  # nothing can follow; it was never published
    async with r.pipeline(transaction=True) as pipe:  # one round trip, one consistent view
        pipe.xrange(RESPONSES, count=1)
        pipe.xrevrange(RESPONSES, count=1)
        pipe.xrange(RESPONSES, min=after, count=limit)
        first, newest, entries = await pipe.execute()
    if not first:
        return None
    # Each entry names the seq before it, so `since` is covered exactly when it is at or
    # after the predecessor of the oldest retained entry.
    oldest_covered = loads(first[0][1][META])["prev"]
    if wanted < parse_seq(oldest_covered) or wanted > parse_seq(newest[0][0].decode()):
        return None
    return entries  # type: ignore[no-any-return]


def _payload(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A response entry's whole payload, read exactly."""
    frame = fields.get(FRAME)
    return joined(loads(fields[META]), None if frame is None else loads(frame))


async def newest_seq(r: aioredis.Redis) -> str | None:
    """The seq of the newest retained response entry (None when there is none)."""
    newest = await r.xrevrange(RESPONSES, count=1)
    return newest[0][0].decode() if newest else None


async def latest_entries(r: aioredis.Redis, limit: int) -> list[dict[str, Any]]:
    entries = await r.xrevrange(RESPONSES, count=limit)
    return [_payload(fields) for _, fields in reversed(entries)]
