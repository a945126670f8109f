"""Fan-out: tail response_duck and hand every entry to the subscribed sockets.

Every process tails the stream with plain XREAD (not a group) and offers one `updates`
frame per read to every subscriber, down to the WebSocket bytes: for an entry read alone
the frame the writer encoded (protocol/entries.py), untouched; for several (the hub fell
behind, or paused after a long dispatch to let entries gather) one merged from their
payloads. Outcomes of requests this process enqueued are routed to their waiters by the
edge's `ref`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from protocol.codec import dumps, loads_published, parse_seq
from protocol.entries import META, entry_frame, joined, updates_message
from server import metrics
from server.hub.presence import Presence
from server.hub.wire import Wire, WriteFrame
from server.store.link import RedisLink, read_streams
from server.store.streams import BLOCK_MS, PERSISTED, REDIS_ERRORS, RESPONSES

log = logging.getLogger("ducksheet.hub")
# After a dispatch to many sockets (1,000 viewers: several ms of send calls) the hub
# pauses for half as long before it reads again, so that entries published meanwhile
# go out together, one frame per socket, instead of a frame per batch: at 1,000 viewers
# a frame per batch saturated both cores with send calls (server and clients alike).
PAUSE_AFTER = 0.001  # seconds a dispatch takes before the hub pauses after it
PAUSE_SHARE = 0.5  # the pause, as a share of the dispatch's own time
Result = dict[str, Any]


@dataclass(frozen=True)
class Published:
    """One response entry as the hub reads it: its payload without the changed rows
    (all of it, for an entry written before the split) and its `updates` frame (None:
    nothing changed)."""

    meta: dict[str, Any]
    frame: bytes | None

    @classmethod
    def read(cls, fields: dict[bytes, bytes]) -> Published:
        return cls(loads_published(fields[META]), entry_frame(fields))

    def payload(self) -> dict[str, Any]:
        """The whole payload, parsed (for merging entries read together)."""
        return joined(self.meta, None if self.frame is None else loads_published(self.frame))


class Subscriber:
    """One socket's view of the stream.

    A frame goes straight to the socket (`write_frame`, encoded once for everyone) when
    nothing waits before it; otherwise into a bounded queue that the socket's pump sends
    in order. Until `start(after)` is called, live frames are held back (the socket is
    still getting its snapshot or replay); then those after `after` are released in order.
    """

    def __init__(
        self,
        limit: int,
        on_overflow: Callable[[], None],
        on_reload: Callable[[], None] = lambda: None,
        write_frame: WriteFrame | None = None,
    ) -> None:
        self.on_reload = on_reload  # called when a bulk change (an import) needs a snapshot
        self.queue: asyncio.Queue[str] = asyncio.Queue(limit)
        self.pumping = False  # the pump holds a frame it has not finished sending
        self._write_frame = write_frame
        self._held: list[tuple[tuple[int, int], Wire]] | None = []
        self._after = (0, 0)
        self._limit = limit
        self._on_overflow = on_overflow
        self.overflowed = False

    def offer(self, seq: tuple[int, int], wire: Wire) -> None:
        if self._held is not None:
            self._held.append((seq, wire))
            if len(self._held) > self._limit:
                self._overflow()
        elif seq > self._after:
            self.send(wire)

    def send(self, wire: Wire) -> None:
        """Send the message after everything sent before (the same `Wire` may go to
        many sockets: it is framed and compressed once)."""
        if self.overflowed:
            return
        write = self._write_frame
        idle = not self.pumping and self.queue.empty()  # nothing waits to go out before it
        if write is not None and idle and write(wire):
            return
        try:
            self.queue.put_nowait(wire.text.decode())  # for the ASGI send, as text
        except asyncio.QueueFull:
            self._overflow()

    def hold(self) -> None:
        """Hold live frames back again until the next start() (a new snapshot)."""
        if self._held is None:
            self._held = []

    def start(self, after: str) -> None:
        self._after = parse_seq(after) if after else (0, 0)
        held, self._held = self._held or [], None
        for seq, wire in held:
            if seq > self._after:
                self.send(wire)

    def _overflow(self) -> None:
        if not self.overflowed:
            self.overflowed = True
            metrics.send_queue_overflow()
            self._on_overflow()


class Hub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.link = RedisLink(redis)  # the tail's blocking reads
        self.subscribers: set[Subscriber] = set()
        self.presence = Presence(redis)  # shared with the other web processes
        self._waiters: dict[str, Callable[[Result], None]] = {}
        self._prefix = uuid.uuid4().hex[:12]
        self._counter = 0
        self.last_seq: str | None = None
        self.persisted: str | None = None  # the last seq DuckDB holds, as the writer said
        self.persist_failed: str | None = None  # why DuckDB holds no more, as the writer said
        self._persisted_seen = asyncio.Event()  # set (and renewed) when `persisted` moves
        self._persisted_id = "0-0"
        self._stopping = asyncio.Event()

    def new_ref(self, on_result: Callable[[Result], None]) -> str:
        """A correlation id for an edit this process enqueues; `on_result` gets its outcome."""
        self._counter += 1
        ref = f"{self._prefix}-{self._counter}"
        self._waiters[ref] = on_result
        return ref

    def forget(self, ref: str) -> None:
        self._waiters.pop(ref, None)

    def stop(self) -> None:
        self._stopping.set()

    async def prime(self) -> None:
        """Learn where the tail starts (the newest response entry) before any socket is
        served: a socket replays what came before that point and takes the rest live, so
        a tail that began later than a socket's replay would skip the entries between."""
        newest = await self.redis.xrevrange(RESPONSES, count=1)
        self.last_seq = newest[0][0].decode() if newest else "0-0"
        newest = await self.redis.xrevrange(PERSISTED, count=1)
        if newest:
            self._persisted_id = newest[0][0].decode()
            self._note_persisted(newest[0][1][b"seq"].decode())

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.link.close()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if self.last_seq is None:  # not primed: Redis was away when serving began
                    await self.prime()
                await self._tail()
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                metrics.redis_reconnect("hub")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _tail(self) -> None:
        assert self.last_seq is not None
        while not self._stopping.is_set():
            command = ("XREAD", "COUNT", 500, "BLOCK", BLOCK_MS, "STREAMS", RESPONSES)
            (reply,) = await self.link.execute(
                (*command, PERSISTED, self.last_seq, self._persisted_id)
            )
            if isinstance(reply, ResponseError):
                raise reply
            for name, entries in read_streams(reply):
                if name in (PERSISTED, PERSISTED.encode()):
                    self._persisted_id = entries[-1][0].decode()
                    failed = entries[-1][1].get(b"failed")
                    self.persist_failed = failed.decode() if failed else None
                    self._note_persisted(entries[-1][1][b"seq"].decode())
                elif entries:
                    self.last_seq = entries[-1][0].decode()
                    started = time.perf_counter()
                    self.dispatch([Published.read(fields) for _, fields in entries])
                    await pause_after(time.perf_counter() - started)

    def _note_persisted(self, seq: str) -> None:
        self.persisted = seq
        self._persisted_seen.set()
        self._persisted_seen = asyncio.Event()

    async def wait_persisted(self, seq: str, seconds: float) -> bool:
        """Wait until DuckDB holds `seq` (True), or `seconds` passed or persisting failed
        (False)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self.persisted is None or parse_seq(self.persisted) < parse_seq(seq):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or self.persist_failed:
                return False
            try:
                await asyncio.wait_for(self._persisted_seen.wait(), left)
            except TimeoutError:
                return False
        return True

    def dispatch(self, entries: list[Published]) -> None:
        """Hand response entries to the subscribers: the entries read together become one
        frame per socket (a hub that fell behind sends fewer, larger frames). An import's
        entry starts a new frame, after which sockets take a fresh snapshot."""
        group: list[Published] = []
        for entry in entries:
            if entry.meta.get("reload"):
                self._offer(group)
                group = []
                for subscriber in list(self.subscribers):
                    subscriber.hold()
                    subscriber.on_reload()
            group.append(entry)
        self._offer(group)

    def _offer(self, entries: list[Published]) -> None:
        # updates before outcomes: a client that sees `applied` with a seq has already
        # been handed the changes up to that seq, so resuming from it loses nothing.
        if not entries:
            return
        frame = _frame_of(entries)
        if frame is not None:
            seq = parse_seq(entries[-1].meta["seq"])
            wire = Wire(frame)  # framed (and compressed) once for every socket
            for subscriber in list(self.subscribers):
                subscriber.offer(seq, wire)
        for entry in entries:
            for result in entry.meta["results"]:
                waiter = self._waiters.pop(result.get("ref") or "", None)
                if waiter is not None:
                    request_id = str(result.get("request") or "")
                    metrics.edit_round_trip(request_id)
                    log.debug(
                        "outcome delivered",
                        extra={"stream_id": request_id, "seq": entry.meta.get("seq")},
                    )
                    waiter(result)


async def pause_after(dispatch_seconds: float) -> None:
    """Let entries gather after a long dispatch (see PAUSE_AFTER)."""
    if dispatch_seconds > PAUSE_AFTER:
        await asyncio.sleep(dispatch_seconds * PAUSE_SHARE)


def _frame_of(entries: list[Published]) -> bytes | None:
    """The `updates` frame for entries read together: the writer's own for one entry
    (as it encoded it), else one merged from their payloads."""
    if len(entries) == 1:
        return entries[0].frame
    message = updates_message([entry.payload() for entry in entries])
    return None if message is None else dumps(message)
