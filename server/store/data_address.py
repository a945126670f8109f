"""Where web processes find the data process: its internal API's address and secret,
published in Redis under a lease the data process keeps renewing.

Whoever can read this key can already read and write the journal, so the secret adds
nothing there; it keeps the API closed to everyone else who can reach its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from protocol.codec import dumps, loads
from server.store.streams import REDIS_ERRORS

log = logging.getLogger("ducksheet.data")
KEY = "ducksheet:data-process"
SECRET_HEADER = "x-ducksheet-secret"  # carries the secret on every forwarded read
LEASE_SECONDS = 10  # a data process that stops renewing is forgotten after this
RENEW_EVERY = 3.0


@dataclass(frozen=True)
class DataAddress:
    url: str  # unix:///path/to.sock or http://host:port
    secret: str

    @classmethod
    def new(cls, url: str) -> DataAddress:
        return cls(url, secrets.token_urlsafe(32))


async def publish(redis: aioredis.Redis, address: DataAddress) -> None:
    body = dumps({"url": address.url, "secret": address.secret})
    await redis.set(KEY, body, ex=LEASE_SECONDS)


async def lookup(redis: aioredis.Redis) -> DataAddress | None:
    raw = await redis.get(KEY)
    if raw is None:
        return None
    value = loads(raw)
    return DataAddress(str(value["url"]), str(value["secret"]))


async def withdraw(redis: aioredis.Redis, address: DataAddress) -> None:
    """Remove the key if it is still ours (a successor may have published its own)."""
    current = await lookup(redis)
    if current == address:
        await redis.delete(KEY)


async def keep_published(redis: aioredis.Redis, address: DataAddress, stop: asyncio.Event) -> None:
    """Renew the lease until `stop`; Redis outages are waited out."""
    while not stop.is_set():
        try:
            await publish(redis, address)
        except REDIS_ERRORS as exc:
            log.warning("could not publish the data address (%s); retrying", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RENEW_EVERY)
