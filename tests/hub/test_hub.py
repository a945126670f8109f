"""Fan-out frames: entries read together become one `updates` frame per socket."""

from __future__ import annotations

import asyncio
import time
import zlib
from decimal import Decimal
from typing import Any

import orjson
import redis as redis_sync

from protocol.entries import FRAME, META, entry_fields, updates_message
from server.config import Settings
from server.edge.auth import Authenticator
from server.hub.fanout import PAUSE_SHARE, Hub, Published, Subscriber
from server.hub.wire import Wire, text_frame
from server.services import Services
from server.store.streams import RESPONSES, connect, entries_after, frames_after

SUMMARY = "sales_summary_by_product_family"


def cell(brand: str | None, month: str | None, quantity: int) -> dict[str, Any]:
    level = 1 if brand else 3
    return {
        "table": SUMMARY,
        **{"supplier": "Acme", "brand": brand, "family": None, "month": month, "level": level},
        **{"quantity": quantity, "net_amount": "1.00"},
    }


def sale(sale_id: int, quantity: int) -> dict[str, Any]:
    return {"table": "sales", "sale_id": sale_id, "quantity": quantity}


def entry(seq: str, rows=(), base=(), holds=(), by=(), results=(), **extra) -> dict[str, Any]:
    return {
        "seq": seq,
        "prev": "0-0",
        "rows": list(rows),
        "base": list(base),
        "holds": list(holds),
        "by": list(by),
        "results": list(results),
        **extra,
    }


def published(payload: dict[str, Any]) -> Published:
    """The entry as the hub reads it from response_duck."""
    return Published.read(entry_fields(payload))


def test_one_entry_becomes_its_own_frame() -> None:
    payload = entry("5-0", rows=[cell("Nova", "2024-03", 7)], base=[sale(3, 7)], by=["ann"])
    frame = updates_message([payload])
    assert frame == {
        "type": "updates",
        "seq": "5-0",
        "rows": payload["rows"],
        "base": payload["base"],
        "holds": [],
        "by": ["ann"],
    }


def test_entries_merge_into_the_latest_state_of_each_row() -> None:
    first = entry(
        "5-0",
        rows=[cell("Nova", "2024-03", 7), cell(None, "2024-03", 70)],
        base=[sale(3, 7), sale(4, 1)],
        holds=[{"on": True, "brand": "Nova"}],
        by=["bob"],
    )
    second = entry(
        "6-1",
        rows=[cell(None, "2024-03", 71), cell("Nova", None, 9)],
        base=[sale(3, 8)],
        holds=[{"on": False, "brand": "Nova"}],
        by=["ann"],
        base_truncated=True,
    )
    frame = updates_message([first, second])
    assert frame["seq"] == "6-1"
    assert frame["rows"] == [
        cell("Nova", "2024-03", 7),
        cell(None, "2024-03", 71),
        cell("Nova", None, 9),
    ]
    assert frame["base"] == [sale(3, 8), sale(4, 1)]
    assert frame["holds"] == [{"on": True, "brand": "Nova"}, {"on": False, "brand": "Nova"}]
    assert frame["by"] == ["ann", "bob"]
    assert frame["base_truncated"] is True


def test_entries_that_changed_nothing_make_no_frame() -> None:
    assert updates_message([entry("5-0"), entry("6-0")]) is None


async def test_dispatch_sends_one_frame_then_the_outcomes() -> None:
    hub = Hub(redis=None)  # type: ignore[arg-type]  # dispatch never touches Redis
    subscriber = Subscriber(limit=10, on_overflow=lambda: None)
    subscriber.start("")
    hub.subscribers.add(subscriber)
    heard: list[tuple[str, int]] = []

    def waiter(result: dict[str, Any]) -> None:
        heard.append((result["status"], subscriber.queue.qsize()))

    ref = hub.new_ref(waiter)
    hub.dispatch(
        [
            published(entry("5-0", base=[sale(3, 7)])),
            published(entry("6-0", base=[sale(3, 8)], results=[{"ref": ref, "status": "applied"}])),
        ]
    )
    assert heard == [("applied", 1)]  # the frame was queued before the outcome
    frame = orjson.loads(subscriber.queue.get_nowait())
    assert (frame["seq"], frame["base"]) == ("6-0", [sale(3, 8)])


async def test_an_import_entry_starts_a_new_frame_after_a_snapshot_request() -> None:
    hub = Hub(redis=None)  # type: ignore[arg-type]
    reloads: list[int] = []
    subscriber = Subscriber(limit=10, on_overflow=lambda: None)
    subscriber.on_reload = lambda: reloads.append(subscriber.queue.qsize())
    subscriber.start("")
    hub.subscribers.add(subscriber)
    hub.dispatch(
        [
            published(entry("5-0", base=[sale(3, 7)])),
            published(entry("6-0", base=[sale(9, 1)], reload=True)),
            published(entry("7-0", base=[sale(3, 9)])),
        ]
    )
    assert reloads == [1]  # the frame before the import went out first
    before = orjson.loads(subscriber.queue.get_nowait())
    assert before["seq"] == "5-0"
    assert subscriber.queue.empty()  # the rest waits for the fresh snapshot
    subscriber.start("5-0")
    after = orjson.loads(subscriber.queue.get_nowait())
    assert (after["seq"], after["base"]) == ("7-0", [sale(9, 1), sale(3, 9)])


def test_an_entry_read_alone_goes_out_as_the_writer_encoded_its_frame() -> None:
    hub = Hub(redis=None)  # type: ignore[arg-type]
    socket = Socket()
    subscriber = Subscriber(limit=10, on_overflow=lambda: None, write_frame=socket.write)
    subscriber.start("")
    hub.subscribers.add(subscriber)
    rows = [cell("Nova", "2024-03", 7) | {"net_amount": Decimal("99999999999999.99")}]
    fields = entry_fields(entry("5-0", rows=rows, by=["ann"]))
    hub.dispatch([Published.read(fields)])
    assert [w.text for w in socket.written] == [fields[FRAME]]  # not parsed, not re-encoded
    assert b'"net_amount":99999999999999.99' in socket.written[0].plain()


def test_an_entry_that_holds_the_whole_payload_still_makes_its_frame() -> None:
    """An entry published before response entries were split (`p` alone)."""
    hub = Hub(redis=None)  # type: ignore[arg-type]
    subscriber = Subscriber(limit=10, on_overflow=lambda: None)
    subscriber.start("")
    hub.subscribers.add(subscriber)
    heard: list[str] = []
    ref = hub.new_ref(lambda result: heard.append(result["status"]))
    old = entry("5-0", base=[sale(3, 7)], results=[{"ref": ref, "status": "applied"}])
    hub.dispatch([Published.read({META: orjson.dumps(old)}), published(entry("6-0"))])
    frame = orjson.loads(subscriber.queue.get_nowait())
    assert (frame["seq"], frame["base"]) == ("6-0", [sale(3, 7)])
    assert heard == ["applied"]


class Socket:
    """A stand-in for the socket's raw frame writer: accepts frames while `open`."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[Wire] = []

    def write(self, wire: Wire) -> bool:
        if self.open:
            self.written.append(wire)
        return self.open


def test_frames_go_straight_to_an_idle_socket_encoded_once() -> None:
    socket = Socket()
    subscriber = Subscriber(limit=10, on_overflow=lambda: None, write_frame=socket.write)
    subscriber.start("")
    wire = Wire(b'{"type":"updates"}')
    subscriber.offer((5, 0), wire)
    subscriber.send(Wire(b'{"type":"pong"}'))
    assert socket.written[0] is wire  # the hub's message, not a copy per socket
    assert socket.written[1].plain() == text_frame('{"type":"pong"}')
    assert subscriber.queue.empty()


def test_once_a_frame_waits_the_later_ones_queue_behind_it() -> None:
    socket = Socket()
    subscriber = Subscriber(limit=10, on_overflow=lambda: None, write_frame=socket.write)
    subscriber.start("")
    socket.open = False  # flow control paused the socket
    subscriber.send(Wire(b"a"))
    socket.open = True  # writable again, but "a" has not been sent yet
    subscriber.send(Wire(b"b"))
    assert socket.written == []
    assert [subscriber.queue.get_nowait() for _ in range(2)] == ["a", "b"]
    subscriber.pumping = True  # the pump holds "b" and has not finished sending it
    subscriber.send(Wire(b"c"))
    assert socket.written == [] and subscriber.queue.get_nowait() == "c"
    subscriber.pumping = False
    subscriber.send(Wire(b"d"))
    assert [w.plain() for w in socket.written] == [text_frame("d")]


def test_text_frame_lengths() -> None:
    for size, header in ((125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (70_000, b"\x81\x7f")):
        frame = text_frame("x" * size)
        assert frame.startswith(header) and frame.endswith(b"x" * size)
    assert len(text_frame("x" * 70_000)) == 2 + 8 + 70_000


async def test_a_replay_hands_out_each_entrys_frame_as_the_writer_encoded_it(
    redis_url: str,
) -> None:
    redis = connect(redis_url)
    try:
        rows = [cell("Nova", "2024-03", 7) | {"net_amount": Decimal("99999999999999.99")}]
        new = entry_fields(entry("2-0", rows=rows) | {"prev": "1-0"})
        old = entry("3-0", base=[sale(3, 7)]) | {"prev": "2-0"}  # written before the split
        await redis.xadd(RESPONSES, entry_fields(entry("1-0") | {"prev": "0-9"}), id="1-0")
        await redis.xadd(RESPONSES, new, id="2-0")
        await redis.xadd(RESPONSES, {META: orjson.dumps(old)}, id="3-0")
        replay = await frames_after(redis, "1-0", 10)
        assert replay is not None and [seq for seq, _ in replay] == ["2-0", "3-0"]
        assert replay[0][1] == new[FRAME]  # not parsed, not re-encoded
        assert orjson.loads(replay[1][1] or b"null")["base"] == [sale(3, 7)]
        assert await frames_after(redis, "0-5", 10) is None  # before what is retained
        assert [p["seq"] for p in await entries_after(redis, "1-0", 10) or []] == ["2-0", "3-0"]
    finally:
        await redis.aclose()


async def test_a_primed_hub_delivers_what_came_after_a_socket_replay(redis_url: str) -> None:
    """The race of a fresh web process: a socket resumes (its replay reads the stream)
    before the hub's task first ran, and the writer publishes in between. The hub must
    know its start before serving, or it starts after that entry and the socket skips it."""
    redis = connect(redis_url)

    async def publish(seq: str, prev: str) -> None:
        payload = entry(seq, base=[sale(3, int(seq[0]))]) | {"prev": prev}
        await redis.xadd(RESPONSES, entry_fields(payload), id=seq)

    await publish("1-0", "0-0")
    hub = Hub(redis)
    await hub.prime()  # as Services.start does before the server accepts a socket
    subscriber = Subscriber(limit=10, on_overflow=lambda: None)
    hub.subscribers.add(subscriber)
    assert await entries_after(redis, "1-0", 10) == []  # the socket was up to date
    await publish("2-0", "1-0")  # the writer publishes after the replay was read
    subscriber.start("1-0")
    running = asyncio.create_task(hub.run())
    try:
        frame = orjson.loads(await asyncio.wait_for(subscriber.queue.get(), 10))
        assert (frame["seq"], frame["base"]) == ("2-0", [sale(3, 2)])
    finally:
        hub.stop()
        await asyncio.wait_for(running, 10)
        await redis.aclose()


async def test_a_web_process_primes_its_hub_before_it_serves(tmp_path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, port=0)
    services = await Services.start(settings, Authenticator({}), "web")
    try:
        assert services.hub is not None and services.hub.last_seq == "0-0"
    finally:
        await services.stop()


def test_a_large_message_is_compressed_once_per_window_and_reads_alone() -> None:
    rows = [cell("Nova", "2024-03", quantity) for quantity in range(40)]
    text = orjson.dumps({"type": "updates", "rows": rows})
    wire = Wire(text)
    for window_bits in (15, 12, 9):
        frame = wire.deflated(window_bits)
        assert frame is wire.deflated(window_bits)  # compressed once, for every socket
        assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
        size, payload = int.from_bytes(frame[2:4]), frame[4:]
        assert frame[1] == 126 and size == len(payload) < len(text) // 4
        fresh = zlib.decompressobj(-window_bits)  # no earlier message needed
        assert fresh.decompress(payload + b"\x00\x00\xff\xff") == text


def test_a_small_message_goes_uncompressed_on_a_compressing_socket() -> None:
    wire = Wire(b'{"type":"pong"}')
    assert wire.deflated(15) == wire.plain() == text_frame('{"type":"pong"}')


async def test_after_a_long_dispatch_the_hub_pauses_so_entries_gather(redis_url: str) -> None:
    """With many sockets a dispatch takes milliseconds of send calls; the hub then waits
    half as long before it reads again, so what the writer publishes meanwhile goes out
    in one frame per socket instead of one per batch."""
    redis = connect(redis_url)
    publisher = redis_sync.Redis.from_url(redis_url)
    hub = Hub(redis)
    await hub.prime()
    ended: list[float] = []
    seqs: list[str] = []
    both = asyncio.Event()

    def slow_write(wire: Wire) -> bool:  # a dispatch to many sockets, in one
        seqs.append(orjson.loads(wire.text)["seq"])
        if len(seqs) == 1:
            time.sleep(0.04)
            publisher.xadd(RESPONSES, entry_fields(entry("2-1", base=[sale(3, 2)])), id="2-1")
        ended.append(time.perf_counter())
        if len(seqs) == 2:
            both.set()
        return True

    subscriber = Subscriber(limit=10, on_overflow=lambda: None, write_frame=slow_write)
    subscriber.start("")
    hub.subscribers.add(subscriber)
    running = asyncio.create_task(hub.run())
    try:
        await redis.xadd(RESPONSES, entry_fields(entry("2-0", base=[sale(3, 1)])), id="2-0")
        await asyncio.wait_for(both.wait(), 10)
        assert seqs == ["2-0", "2-1"]
        assert ended[1] - ended[0] >= 0.04 * PAUSE_SHARE * 0.9  # read only after the pause
    finally:
        hub.stop()
        await asyncio.wait_for(running, 10)
        await redis.aclose()
        publisher.close()
