"""One Redis connection for the hot paths: the edge's XADDs, the writer's journal
reads and publishes, the hub's tail.

redis-py spends ~250 µs of CPU on an XADD and an XREADGROUP in this process (its
pipeline object, retry wrapper, pool and asyncio streams), a bare asyncio protocol with
hiredis's parser and packer ~80 µs; at 1,000 edits/s these commands run ~1,400 times a
second across the processes. Everything else (the persister's acks, reads for resume,
presence, versions) stays on redis-py.

Replies are RESP2 as hiredis parses them (bytes, lists, None); an error reply is
returned in its place as redis-py's `ResponseError`, and a lost or timed-out
connection raises redis-py's `ConnectionError` / `TimeoutError`, so the callers'
handling of `REDIS_ERRORS` is the same for both clients.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[Any, ...]
CONNECT_TIMEOUT = 5.0


class _Replies(asyncio.Protocol):
    """Feeds what Redis sends to hiredis and hands each pipeline its replies, in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                reply = ResponseError(str(reply))
            future, count, replies = self.waiting[0]
            replies.append(reply)
            if len(replies) == count:
                self.waiting.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to redis lost ({exc or 'closed'})")
        while self.waiting:
            future, _, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)


class RedisLink:
    """Pipelines of commands over one connection to the server `client` connects to
    (same address, credentials, database and timeout), (re)connected on first use."""

    def __init__(self, client: aioredis.Redis | None) -> None:
        self.client = client
        self._protocol: _Replies | None = None
        self._connecting: asyncio.Lock | None = None

    @property
    def timeout(self) -> float:
        """Seconds a pipeline may take, blocking reads included: the client's."""
        assert self.client is not None
        return self.client.connection_pool.connection_kwargs.get("socket_timeout") or 30.0

    async def execute(self, *commands: Command) -> list[Any]:
        """Send `commands` in one write; their replies (error replies as ResponseError)."""
        protocol = await self._connected()
        assert protocol.transport is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiting.append((future, len(commands), []))
        protocol.transport.write(b"".join(hiredis.pack_command(c) for c in commands))
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError as exc:
            self.close()  # its replies would arrive for the next pipeline
            raise RedisTimeoutError(f"redis did not answer within {self.timeout:g} s") from exc
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    async def _connected(self) -> _Replies:
        if self._protocol is not None and self._protocol.lost is None:
            return self._protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._connect()
        return self._protocol

    async def _connect(self) -> _Replies:
        assert self.client is not None
        pool = self.client.connection_pool
        options = pool.connection_kwargs
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if issubclass(pool.connection_class, UnixDomainSocketConnection):
                    _, protocol = await loop.create_unix_connection(_Replies, options["path"])
                else:
                    tls = issubclass(pool.connection_class, SSLConnection)
                    _, protocol = await loop.create_connection(
                        _Replies,
                        options.get("host", "localhost"),
                        options.get("port", 6379),
                        ssl=tls_context(options) if tls else None,
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc}") from exc
        setup: list[Command] = []
        if options.get("password") is not None:
            user = options.get("username")
            password = options["password"]
            setup.append(("AUTH", user, password) if user else ("AUTH", password))
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        self._protocol = protocol
        if setup:
            for reply in await self.execute(*setup):
                if isinstance(reply, ResponseError):
                    self.close()
                    raise RedisConnectionError(f"redis refused the connection: {reply}")
        return protocol


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings a rediss:// URL gives redis-py: CA file, client certificate, and
    `ssl_cert_reqs=none` to skip verification."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """A stream's entries in an XREAD/XREADGROUP reply, as redis-py gives them: (id,
    fields) pairs; an entry deleted while pending has no fields ({})."""
    entries = []
    for entry_id, flat in reply:
        fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
        entries.append((entry_id, fields))
    return entries


def read_streams(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """An XREAD/XREADGROUP reply as (stream name, entries), [] when nothing came."""
    return [(name, stream_entries(entries)) for name, entries in reply or []]
