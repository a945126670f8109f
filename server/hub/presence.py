"""Who is connected and which cell each is on, across every web process.

A user appears to others once they report a cursor; moves and departures go out as
small deltas, and a newcomer gets the current list in its welcome. This process's own
members are told at once; other web processes hear it through a Redis pub/sub channel.
Each process also publishes its whole list every HEARTBEAT seconds, which repairs any
delta lost while Redis was away and introduces a process that just started. A process
not heard from for EXPIRE seconds (it crashed) is gone, with its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from protocol.codec import dumps, loads
from server.hub.wire import Wire
from server.store.streams import REDIS_ERRORS

log = logging.getLogger("ducksheet.presence")
CHANNEL = "ducksheet:presence"
HEARTBEAT = 2.0  # seconds between full lists
EXPIRE = 3 * HEARTBEAT  # seconds of silence after which a process counts as gone
TICK = 0.5  # seconds between checks for silent processes

Public = dict[str, Any]


@dataclass
class Member:
    id: str
    name: str
    send: Callable[[Wire], None]
    cell: dict[str, Any] | None = None
    announced: bool = False

    def public(self) -> Public:
        return {"id": self.id, "name": self.name, "cell": self.cell}


class Presence:
    def __init__(self, redis: aioredis.Redis | None = None) -> None:
        self.redis = redis  # None: this process only
        self.node = uuid.uuid4().hex[:8]  # this process, in member ids and messages
        self._members: dict[str, Member] = {}
        self._ids = itertools.count(1)
        self._remote: dict[str, dict[str, Public]] = {}  # node -> member id -> public
        self._heard: dict[str, float] = {}  # node -> when it last spoke (monotonic)
        self._outgoing: list[dict[str, Any]] = []
        self._wake = asyncio.Event()

    def join(self, name: str, send: Callable[[Wire], None]) -> Member:
        member = Member(f"u{next(self._ids)}-{self.node}", name, send)
        self._members[member.id] = member
        return member

    def others(self, member: Member) -> list[Public]:
        local = [m.public() for m in self._members.values() if m.announced and m is not member]
        return local + [p for node in self._remote.values() for p in node.values()]

    def move(self, member: Member, cell: dict[str, Any] | None) -> None:
        member.cell = cell
        member.announced = True
        self._tell_local({"type": "presence", **member.public()}, member)
        self._publish({"kind": "move", "member": member.public()})

    def leave(self, member: Member) -> None:
        self._members.pop(member.id, None)
        if member.announced:
            self._tell_local({"type": "presence", **member.public(), "gone": True}, member)
            self._publish({"kind": "gone", "member": member.public()})

    def _tell_local(self, message: dict[str, Any], source: Member | None = None) -> None:
        wire = Wire(dumps(message))  # one message for every member
        for member in list(self._members.values()):
            if member is not source:
                member.send(wire)

    def _publish(self, message: dict[str, Any]) -> None:
        if self.redis is not None:
            self._outgoing.append({"node": self.node, **message})
            self._wake.set()

    # -- other processes -----------------------------------------------------------

    def receive(self, message: dict[str, Any]) -> None:
        """A message of another process (this process's own are ignored)."""
        node = message.get("node")
        if not isinstance(node, str) or node == self.node:
            return
        kind = message.get("kind")
        if kind == "bye":
            self._drop(node)
            return
        self._heard[node] = time.monotonic()
        members = self._remote.setdefault(node, {})
        if kind == "move":
            public = message["member"]
            members[public["id"]] = public
            self._tell_local({"type": "presence", **public})
        elif kind == "gone":
            public = members.pop(message["member"]["id"], message["member"])
            self._tell_local({"type": "presence", **public, "gone": True})
        elif kind == "beat":
            self._reconcile(node, {p["id"]: p for p in message["members"]})

    def _reconcile(self, node: str, listed: dict[str, Public]) -> None:
        known = self._remote.setdefault(node, {})
        for member_id, public in listed.items():
            if known.get(member_id) != public:
                self._tell_local({"type": "presence", **public})
        for member_id in set(known) - set(listed):
            self._tell_local({"type": "presence", **known[member_id], "gone": True})
        self._remote[node] = listed

    def _drop(self, node: str) -> None:
        self._heard.pop(node, None)
        for public in self._remote.pop(node, {}).values():
            self._tell_local({"type": "presence", **public, "gone": True})

    def _expire(self) -> None:
        now = time.monotonic()
        for node in [n for n, heard in self._heard.items() if now - heard > EXPIRE]:
            self._drop(node)

    async def run(self, stop: asyncio.Event) -> None:
        """Exchange presence with the other processes until `stop`."""
        assert self.redis is not None
        backoff = 0.1
        while not stop.is_set():
            try:
                await self._exchange(self.redis, stop)
            except REDIS_ERRORS as exc:
                log.warning("presence: redis unavailable (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.publish(CHANNEL, dumps({"node": self.node, "kind": "bye"}))

    async def _exchange(self, redis: aioredis.Redis, stop: asyncio.Event) -> None:
        async with _own_connection(redis) as listener, listener.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            sending = asyncio.create_task(self._send_loop(redis, stop))
            try:
                while not stop.is_set() and not sending.done():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=TICK)
                    if message is not None:
                        self.receive(loads(message["data"]))
                    self._expire()
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending  # raises what stopped it, if Redis did

    async def _send_loop(self, redis: aioredis.Redis, stop: asyncio.Event) -> None:
        next_beat = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_beat:
                members = [m.public() for m in self._members.values() if m.announced]
                self._outgoing.append({"node": self.node, "kind": "beat", "members": members})
                next_beat = time.monotonic() + HEARTBEAT
            if self._outgoing:
                batch, self._outgoing = self._outgoing, []
                async with redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(CHANNEL, dumps(message))
                    await pipe.execute()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - time.monotonic()))


@contextlib.asynccontextmanager
async def _own_connection(redis: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """A client on the same server with a pool of its own: the subscription holds its
    connection for good, which must not starve the pool that commands share."""
    shared = redis.connection_pool
    pool = aioredis.ConnectionPool(
        connection_class=shared.connection_class, max_connections=1, **shared.connection_kwargs
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        yield client
    finally:
        await client.aclose()
