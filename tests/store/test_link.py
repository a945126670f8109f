"""The hot paths' Redis connection: pipelines answered in order, errors in place, and a
connection that was lost, timed out or abandoned mid-command replaced by a fresh one."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import ResponseError

from server.store.embedded_redis import EmbeddedRedis
from server.store.link import RedisLink, read_streams, tls_context
from server.store.streams import REDIS_ERRORS, connect

Linked = tuple[redis.asyncio.Redis, RedisLink]


@pytest.fixture
async def linked(redis_url: str) -> AsyncIterator[Linked]:
    """A redis-py client and a link to the same server."""
    client = connect(redis_url)
    link = RedisLink(client)
    yield client, link
    link.close()
    await client.aclose()


async def test_a_pipeline_gets_its_replies_in_order_with_errors_in_place(linked: Linked) -> None:
    _, link = linked
    first, wrong, second = await link.execute(
        ("XADD", "s", "*", "f", b"\xff\x00 one"),
        ("INCR", "s"),  # a stream is no integer: an error reply, not an exception
        ("XADD", "s", "*", "f", "two", "g", "3"),
    )
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    (reply,) = await link.execute(("XREAD", "COUNT", 10, "STREAMS", "s", "0-0"))
    assert read_streams(reply) == [
        (b"s", [(first, {b"f": b"\xff\x00 one"}), (second, {b"f": b"two", b"g": b"3"})])
    ]
    (nothing,) = await link.execute(("XREAD", "COUNT", 10, "STREAMS", "s", second))
    assert read_streams(nothing) == []


async def test_concurrent_pipelines_each_get_their_own_replies(linked: Linked) -> None:
    _, link = linked
    replies = await asyncio.gather(
        *(link.execute(("INCRBY", "n", k), ("GET", "n")) for k in range(1, 51))
    )
    # gather sends them in order: each GET sees its own INCRBY and no later one
    assert [(int(total), int(got)) for total, got in replies] == [
        (k * (k + 1) // 2, k * (k + 1) // 2) for k in range(1, 51)
    ]


async def test_an_abandoned_blocking_read_does_not_hold_up_the_next_pipeline(
    linked: Linked,
) -> None:
    _, link = linked
    read = ("XREAD", "BLOCK", 60_000, "STREAMS", "s", "$")
    reading = asyncio.create_task(link.execute(read))
    await asyncio.sleep(0.1)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    # on the same connection the PING's reply would queue behind the read's minute
    assert await asyncio.wait_for(link.execute(("PING",)), 10) == [b"PONG"]


async def test_a_read_past_the_clients_timeout_fails_and_the_link_recovers(linked: Linked) -> None:
    client, link = linked
    client.connection_pool.connection_kwargs["socket_timeout"] = 0.2  # the link's too
    with pytest.raises(REDIS_ERRORS):
        await link.execute(("XREAD", "BLOCK", 3000, "STREAMS", "s", "$"))
    assert await link.execute(("PING",)) == [b"PONG"]


async def test_a_killed_connection_is_replaced_on_the_next_pipeline(linked: Linked) -> None:
    client, link = linked
    (link_id,) = await link.execute(("CLIENT", "ID"))
    waiting = asyncio.create_task(link.execute(("BLPOP", "nothing", 5)))
    await asyncio.sleep(0.1)
    await client.client_kill_filter(_id=link_id)
    with pytest.raises(REDIS_ERRORS):  # the pipeline in flight hears it
        await waiting
    assert await link.execute(("PING",)) == [b"PONG"]


async def test_an_unreachable_server_raises_a_redis_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(f"redis://127.0.0.1:{port}/0")
    link = RedisLink(client)
    with pytest.raises(REDIS_ERRORS):
        await link.execute(("PING",))
    await client.aclose()


async def test_a_password_and_database_in_the_url_are_used(tmp_path: Path) -> None:
    # a data dir too long for a unix socket: the embedded server listens on TCP with a password
    with EmbeddedRedis(tmp_path / ("d" * 60) / ("e" * 60)) as embedded:
        url = embedded.url.rsplit("/", 1)[0] + "/3"
        client = connect(url)
        link = RedisLink(client)
        try:
            await link.execute(("SET", "k", "in three"))
            assert await client.get("k") == b"in three"  # redis-py, told db 3 by the URL
            stranger = RedisLink(connect(url.replace(url.split("@")[0], "redis://:wrong")))
            with pytest.raises(REDIS_ERRORS):
                await stranger.execute(("PING",))
            stranger.close()
        finally:
            link.close()
            await client.aclose()


def test_a_rediss_url_gives_the_tls_settings_redis_py_reads() -> None:
    checked = redis.asyncio.from_url("rediss://cache.example:6380/0")
    context = tls_context(checked.connection_pool.connection_kwargs)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    unchecked = redis.asyncio.from_url("rediss://cache.example:6380/0?ssl_cert_reqs=none")
    context = tls_context(unchecked.connection_pool.connection_kwargs)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


async def test_a_missing_ca_file_is_a_redis_error(tmp_path: Path) -> None:
    client = redis.asyncio.from_url(f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path}/none.pem")
    with pytest.raises(REDIS_ERRORS):
        await RedisLink(client).execute(("PING",))
