"""The edge's XADD path: many requests per Redis round trip, in order, errors to each."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protocol.actions import Sender
from protocol.codec import loads, parse_seq
from protocol.edits import Edit, parse_edit
from server.store.streams import FIELD, REDIS_ERRORS, REQUESTS, Enqueuer, connect, decode_request


def edit(sale_id: int) -> Edit:
    condition = {"sale_id": sale_id}
    return parse_edit({"table": "sales", "column": "quantity", "value": 1, "condition": condition})


async def test_concurrent_requests_are_added_once_each_in_call_order(redis_url):
    redis = connect(redis_url)
    enqueuer = Enqueuer(redis)
    try:
        ids = await asyncio.gather(
            *(enqueuer.enqueue(edit(n), Sender(f"user-{n}", f"ref-{n}")) for n in range(1, 301))
        )
        entries = await redis.xrange(REQUESTS)
    finally:
        await redis.aclose()
    assert len(set(ids)) == 300
    assert ids == sorted(ids, key=parse_seq)  # gather starts them in order
    assert [entry_id.decode() for entry_id, _ in entries] == ids
    for n, (_, fields) in enumerate(entries, start=1):
        assert decode_request(fields) == (edit(n), Sender(f"user-{n}", f"ref-{n}"))


async def test_a_cancelled_sender_does_not_disturb_the_others(redis_url):
    redis = connect(redis_url)
    enqueuer = Enqueuer(redis)
    try:
        first = asyncio.create_task(enqueuer.enqueue(edit(1), Sender("ann")))
        second = asyncio.create_task(enqueuer.enqueue(edit(2), Sender("bob")))
        await asyncio.sleep(0)  # both are waiting for the same round trip
        first.cancel()
        request_id = await second
        entries = await redis.xrange(REQUESTS)
    finally:
        await redis.aclose()
    assert request_id == entries[-1][0].decode()
    assert loads(entries[-1][1][FIELD])["user"] == "bob"


async def test_every_waiting_sender_hears_that_redis_is_unreachable():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = connect(f"redis://127.0.0.1:{port}/0")
    enqueuer = Enqueuer(redis)
    try:
        results = await asyncio.gather(
            *(enqueuer.enqueue(edit(n), Sender("ann")) for n in range(1, 4)),
            return_exceptions=True,
        )
    finally:
        await redis.aclose()
    assert all(isinstance(result, REDIS_ERRORS) for result in results), results
    with pytest.raises(REDIS_ERRORS):  # and the next request tries again
        await enqueuer.enqueue(edit(4), Sender("ann"))
