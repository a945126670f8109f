"""Documented behaviour that is easy to break without noticing, each checked through the
public contract (REST, WebSocket, the streams' documented retention) against a real
server, real Redis and real DuckDB. `scripts/mutations.toml` names these tests as the
ones that must fail when the behaviour is broken."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis as redis_sync
import websockets
from conftest import RunningServer, run_server
from helpers import Client, all_persisted

from protocol.catalog import SUMMARY
from server.config import Settings
from server.store.streams import GROUP, REQUESTS, RESPONSES

DEADLINE = 30.0  # seconds any awaited event may take before the test fails
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            found = await probe()
            if found is not None and found is not False:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # unreachable: the timeout raises first


@contextlib.asynccontextmanager
async def serving(data_dir: Path, redis_url: str, **settings: Any) -> AsyncIterator[RunningServer]:
    async with run_server(Settings(data_dir=data_dir, redis_url=redis_url, **settings)) as s:
        yield s


async def post_edit(http: httpx.AsyncClient, edit: dict[str, Any], wait: str = "10"):
    return await http.post(f"/update_cell?wait={wait}", json={"data": edit})


async def a_brand_month(http: httpx.AsyncClient) -> dict[str, Any]:
    """A brand-month summary cell as /view_table shows it."""
    condition = json.dumps({"level": 1})
    page = await http.get(
        f"/view_table/{SUMMARY}",
        params={"condition": condition, "order": "-net_amount", "limit": 50},
    )
    return next(row for row in page.json()["data"]["rows"] if row["month"] is not None)


def cell_of(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("supplier", "brand", "family", "month")}


# ---- compare-and-set --------------------------------------------------------------


async def test_a_summary_cell_expect_is_compare_and_set(server):
    async with server.client() as http:
        row = await a_brand_month(http)
        current = Decimal(str(row["net_amount"]))
        edit = {
            "table": SUMMARY,
            "column": "net_amount",
            "value": "1234.56",
            "condition": cell_of(row),
        }
        stale = await post_edit(http, {**edit, "expect": str(current + 1)})
        assert stale.status_code == 409, stale.text
        error = stale.json()["error"]
        assert error["code"] == "conflict"
        assert Decimal(str(error["current"])) == current
        fresh = await post_edit(http, {**edit, "expect": str(current)})
        assert fresh.status_code == 200 and fresh.json()["data"]["status"] == "applied"
        after = await a_cell(http, cell_of(row))
        assert Decimal(str(after["net_amount"])) == Decimal("1234.56")


async def a_cell(http: httpx.AsyncClient, cell: dict[str, Any]) -> dict[str, Any]:
    page = await http.get(f"/view_table/{SUMMARY}", params={"condition": json.dumps(cell)})
    (row,) = page.json()["data"]["rows"]
    return row


async def test_a_base_expect_needs_exactly_one_row_and_conflicts_with_409(server):
    async with server.client() as http:
        page = await http.get("/view_table/sales", params={"limit": 1})
        sale = page.json()["data"]["rows"][0]
        product = sale["product_id"]
        many = await http.get("/view_table/sales", params={"condition": f"product_id = {product}"})
        assert many.json()["data"]["total"] > 1
        edit = {"table": "sales", "column": "quantity", "value": 7}
        several = await post_edit(
            http, {**edit, "condition": {"product_id": product}, "expect": sale["quantity"]}
        )
        assert several.status_code == 422, several.text
        assert several.json()["error"]["code"] == "bad_condition"
        one = {"sale_id": sale["sale_id"]}
        stale = await post_edit(http, {**edit, "condition": one, "expect": sale["quantity"] + 1})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"
        assert stale.json()["error"]["current"] == sale["quantity"]
        ok = await post_edit(http, {**edit, "condition": one, "expect": sale["quantity"]})
        assert ok.status_code == 200, ok.text


# ---- retention, trimming, resync ------------------------------------------------------


@pytest.fixture
def fine_grained_trimming(redis_url: str):
    """Approximate trimming removes whole stream nodes (100 entries by default): small
    nodes let a short test see it."""
    with redis_sync.Redis.from_url(redis_url) as r:
        before = r.config_get("stream-node-max-entries")["stream-node-max-entries"]
        r.config_set("stream-node-max-entries", 5)
        yield r
        r.config_set("stream-node-max-entries", before)


async def test_streams_are_trimmed_and_a_trimmed_since_resyncs(
    data_dir, redis_url, fine_grained_trimming
):
    r = fine_grained_trimming
    edits = 130
    async with serving(data_dir, redis_url, response_retention=20) as server:
        editor = await Client.connect(server, "editor")
        await editor.next("snapshot")
        seqs = []
        for n in range(edits):  # one by one: one batch, one response entry each
            edit = {"table": "sales", "column": "quantity", "value": n, "condition": {}}
            edit["condition"] = {"sale_id": 1 + n % 40}
            await editor.edit(f"e{n}", **edit)
            seqs.append((await editor.next("applied", id=f"e{n}"))["seq"])
        await editor.close()
        async with server.client() as http:
            await eventually(
                lambda: asyncio.to_thread(lambda: r.xlen(RESPONSES) <= 40),
                "response_duck keeps about DUCKSHEET_RESPONSE_RETENTION entries",
            )
            await eventually(
                lambda: asyncio.to_thread(lambda: r.xlen(REQUESTS) <= edits // 2),
                "request_duck is trimmed below the last applied request",
            )
            # a since that is still retained replays; a trimmed one says resync
            recent = await http.get("/get_updates", params={"since": seqs[-3]})
            assert "resync" not in recent.json()["data"]
            assert {u["seq"] for u in recent.json()["data"]["updates"]} == set(seqs[-2:])
            trimmed = await http.get("/get_updates", params={"since": seqs[0]})
            body = trimmed.json()["data"]
            assert body["resync"] is True and body["updates"] == []
            assert body["last_seq"] == seqs[-1]
        await all_persisted(server)  # so that the snapshot is at the last seq
        client = await Client.connect(server, "late", since=seqs[0])
        resync = await client.next("resync")
        snapshot = await client.next("snapshot")
        assert resync["seq"] == snapshot["seq"] == seqs[-1]
        await client.close()


# ---- shutdown ---------------------------------------------------------------------


async def test_shutdown_closes_sockets_with_going_away(data_dir, redis_url):
    async with serving(data_dir, redis_url) as server:
        client = await Client.connect(server, "ann")
        await client.next("snapshot")
    async with asyncio.timeout(DEADLINE):
        await client.ws.wait_closed()
    assert client.ws.close_code == 1001


async def test_a_socket_opened_once_shutdown_began_is_closed_at_once(server):
    """A browser reconnecting just as a restart began must not hold the shutdown (the
    sockets open then were closed already; uvicorn waits for every one it accepted)."""
    await server.services.close_sessions()  # what shutdown does first
    async with websockets.connect(server.ws_url) as late:
        async with asyncio.timeout(DEADLINE):
            await late.wait_closed()
        assert late.close_code == 1001
    assert not server.services.sessions


# ---- compression ---------------------------------------------------------------------


class RawSocket:
    """A WebSocket client that keeps the frames as the server wrote them (compressed or
    not), over a plain TCP connection: offers permessage-deflate as browsers do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.extensions = ""

    @classmethod
    async def connect(cls, server: RunningServer, name: str) -> RawSocket:
        host, port = server.base.removeprefix("http://").split(":")
        sock = cls(*await asyncio.open_connection(host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
        )
        head = (await sock.reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 101"), head
        sock.extensions = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-extensions:")
        )
        await sock.send({"type": "hello", "name": name})
        return sock

    async def send(self, message: dict[str, Any]) -> None:
        from bench.lean import OP_TEXT, client_frame

        self.writer.write(client_frame(OP_TEXT, json.dumps(message).encode()))

    async def frame(self) -> tuple[bool, bytes]:
        """The next text frame: whether it is compressed (RSV1), and its payload."""
        async with asyncio.timeout(DEADLINE):
            while True:
                first, second = await self.reader.readexactly(2)
                size = second & 0x7F
                if size >= 126:
                    wide = await self.reader.readexactly(2 if size == 126 else 8)
                    size = int.from_bytes(wide, "big")
                payload = await self.reader.readexactly(size)
                if first & 0x0F == 0x1:
                    return bool(first & 0x40), payload

    async def message(self, kind: str) -> tuple[bool, bytes, dict[str, Any]]:
        """The next message of `kind`, as sent and as read, each read alone."""
        while True:
            compressed, payload = await self.frame()
            text = read_alone(payload) if compressed else payload
            message = json.loads(text)
            if message["type"] == kind:
                return compressed, payload, message

    def close(self) -> None:
        self.writer.close()


def read_alone(payload: bytes) -> bytes:
    """A compressed message inflated with a fresh inflater: it must not need any earlier
    message (no server context takeover)."""
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\x00\x00\xff\xff")


async def test_messages_are_compressed_once_the_same_for_every_socket(server):
    """permessage-deflate is accepted without server context takeover: a large message is
    compressed on its own and every socket gets the same bytes; small ones go plain."""
    ann, bob = await RawSocket.connect(server, "ann"), await RawSocket.connect(server, "bob")
    try:
        offered = [p.strip() for p in ann.extensions.split(";")]
        assert offered[0] == "permessage-deflate" and "server_no_context_takeover" in offered
        for sock in (ann, bob):
            compressed, _, snapshot = await sock.message("snapshot")
            assert compressed and snapshot["rows"]
        async with server.client() as http:
            row = await a_brand_month(http)
            edit = {"table": SUMMARY, "column": "quantity", "value": row["quantity"] + 12}
            response = await post_edit(http, {**edit, "condition": cell_of(row)})
        seq = response.json()["data"]["seq"]
        sent = []
        for sock in (ann, bob):
            while True:
                compressed, payload, updates = await sock.message("updates")
                if updates["seq"] >= seq:
                    break
            assert compressed and len(updates["rows"]) >= 8  # its cells up to the total
            sent.append(payload)
        assert sent[0] == sent[1]  # compressed once for both
        await ann.send({"type": "ping"})
        compressed, payload, _ = await ann.message("pong")
        assert not compressed and len(payload) < 256
    finally:
        ann.close()
        bob.close()


# ---- limits -------------------------------------------------------------------------


async def test_changed_base_rows_are_capped_per_update(data_dir, redis_url):
    async with serving(data_dir, redis_url, base_rows_broadcast=5) as server:
        viewer = await Client.connect(server, "viewer")
        await viewer.next("snapshot")
        async with server.client() as http:
            edit = {"table": "sales", "column": "quantity", "value": 3}
            # (an object condition: after a text condition, a later EmbeddedRedis start in
            # this process was seen to die with SIGSEGV in its forked child; see issue note)
            many = {"customer_id": 1, "quantity": 3}
            answer = await post_edit(http, {**edit, "value": 4, "condition": many})
            assert answer.status_code == 200, answer.text
            seq = answer.json()["data"]["seq"]
            single = await post_edit(http, {**edit, "condition": {"sale_id": 20}})
        capped = await viewer.next("updates", seq=seq)
        assert len(capped["base"]) == 5 and capped["base_truncated"] is True
        uncapped = await viewer.next("updates", seq=single.json()["data"]["seq"])
        assert len(uncapped["base"]) == 1 and "base_truncated" not in uncapped
        await viewer.close()


async def test_view_page_max_bounds_the_limit(data_dir, redis_url):
    async with serving(data_dir, redis_url, view_page_max=7) as server, server.client() as http:
        page = await http.get("/view_table/sales", params={"limit": 7})
        assert page.status_code == 200 and len(page.json()["data"]["rows"]) == 7
        too_many = await http.get("/view_table/sales", params={"limit": 8})
        assert too_many.status_code == 400
        assert too_many.json()["error"]["code"] == "bad_message"


async def test_wait_is_capped_at_30_seconds(server):
    edit = {"table": "sales", "column": "quantity", "value": 4, "condition": {"sale_id": 2}}
    async with server.client() as http:
        for wait in ("30", "30.0"):
            assert (await post_edit(http, edit, wait)).status_code == 200
        for wait in ("30.001", "31", "99"):
            refused = await post_edit(http, edit, wait)
            assert refused.status_code == 400, wait
            assert refused.json()["error"]["code"] == "bad_message"
            hold = await http.post(f"/holds?wait={wait}", json={"data": {"on": True}})
            assert hold.status_code == 400


async def test_a_full_redis_pool_answers_reads_unavailable_while_edits_still_queue(
    data_dir, redis_url
):
    # Two pooled connections, both taken by the test. The hub's tail, the writer and the
    # edits' journal have connections of their own, so edits are not held up behind a
    # burst of reads.
    async with serving(data_dir, redis_url, redis_connections=2) as server:
        edit = {"table": "sales", "column": "quantity", "value": 4, "condition": {}}
        edit["condition"] = {"sale_id": 3}
        with redis_sync.Redis.from_url(redis_url) as r:

            def both_blocked() -> bool:
                blocked = {c["cmd"] for c in r.client_list() if "b" in c["flags"]}
                return {"xread", "xreadgroup"} <= blocked

            await eventually(lambda: asyncio.to_thread(both_blocked), "no blocking reads")
        pool = server.services.redis.connection_pool
        taken = [await pool.get_connection(), await pool.get_connection()]
        try:
            async with httpx.AsyncClient(base_url=server.base, timeout=DEADLINE) as http:
                updates = await http.get("/get_updates", params={"since": "0-0"})
                assert updates.status_code == 503
                assert updates.json()["error"]["code"] == "unavailable"
                queued = await http.post("/update_cell", json={"data": edit})
                assert queued.status_code == 202
                await eventually(lambda: _applied(http, edit), "the edit was not applied")
        finally:
            for connection in taken:
                await pool.release(connection)


async def _applied(http: httpx.AsyncClient, edit: dict[str, Any]) -> bool:
    return (await post_edit(http, edit, "1")).status_code == 200


# ---- health and recovery ------------------------------------------------------------


async def test_healthz_says_degraded_while_redis_does_not_answer(server, redis_url):
    async with server.client() as http:
        assert (await http.get("/healthz")).status_code == 200
        with redis_sync.Redis.from_url(redis_url) as r:
            r.execute_command("CLIENT", "PAUSE", 4000, "ALL")  # its ping times out after 2 s
        down = await http.get("/healthz")
        assert down.status_code == 503
        assert down.json()["status"] == "degraded"
        assert down.json()["redis"].startswith("unavailable")

        async def healthy() -> bool:
            return (await http.get("/healthz")).status_code == 200

        await eventually(healthy, "healthz back to 200 after Redis answered again")


async def test_the_consumer_group_is_recreated_when_redis_lost_it(server, redis_url):
    edit = {"table": "sales", "column": "quantity", "value": 8, "condition": {"sale_id": 4}}
    async with server.client() as http:
        assert (await post_edit(http, edit)).status_code == 200
        with redis_sync.Redis.from_url(redis_url) as r:
            assert r.xgroup_destroy(REQUESTS, GROUP) == 1
        again = await post_edit(http, {**edit, "value": 9}, wait="30")
        assert again.status_code == 200, again.text
        sale = await http.get("/view_table/sales", params={"condition": '{"sale_id": 4}'})
        assert sale.json()["data"]["rows"][0]["quantity"] == 9


# ---- imports and holds reach open sockets ---------------------------------------------


async def test_an_import_sends_open_sockets_resync_and_a_snapshot(server):
    viewer = await Client.connect(server, "viewer")
    await viewer.next("snapshot")
    body = b"sale_id,invoice_date,product_id,customer_id,quantity,net_price\n"
    body += b"990001,2024-02-03,1,1,5,10.50\n"
    async with server.client() as http:
        answer = await http.post(
            "/import/sales", content=body, headers={"content-type": "text/csv"}
        )
    assert answer.status_code == 200, answer.text
    resync = await viewer.next("resync")
    snapshot = await viewer.next("snapshot")
    assert resync["reason"] == "import" and snapshot["seq"] == resync["seq"]
    assert answer.json()["data"]["seq"] == snapshot["seq"]
    await viewer.close()


async def test_a_snapshot_carries_the_holds(server):
    async with server.client() as http:
        cell = cell_of(await a_brand_month(http))
        held = await http.post("/holds?wait=10", json={"data": {"condition": cell, "on": True}})
        assert held.status_code == 200, held.text
    client = await Client.connect(server, "bob")
    snapshot = await client.next("snapshot")
    holds = [{k: h.get(k) for k in cell} for h in snapshot["holds"]]
    assert holds == [cell]
    await client.close()


# ---- configured origins ---------------------------------------------------------------


async def test_configured_origins_are_allowed_and_no_others(data_dir, redis_url):
    allowed = "https://grid.example.com"
    settings = Settings.from_env(
        {"DUCKSHEET_ALLOWED_ORIGINS": f"{allowed}, https://other.example.org/"},
        data_dir=data_dir,
        redis_url=redis_url,
    )
    edit = {"table": "sales", "column": "quantity", "value": 4, "condition": {"sale_id": 5}}
    async with run_server(settings) as server, server.client() as http:
        for origin in (allowed, "https://other.example.org"):
            ok = await http.post("/update_cell", json={"data": edit}, headers={"origin": origin})
            assert ok.status_code == 202, (origin, ok.text)
        foreign = await http.post(
            "/update_cell", json={"data": edit}, headers={"origin": "https://evil.example.com"}
        )
        assert foreign.status_code == 403
        ws = await websockets.connect(server.ws_url, origin=allowed)
        await ws.send(json.dumps({"type": "hello", "name": "ann"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.close()
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(server.ws_url, origin="https://evil.example.com")


# ---- a database that fails ------------------------------------------------------------


async def test_a_failed_database_shows_in_healthz_and_refuses_edits(server):
    # How the writer notices a failure is its own business (and is being rewritten);
    # this is what the edge promises once it has.
    edit = {"table": "sales", "column": "quantity", "value": 4, "condition": {"sale_id": 6}}
    server.services.db.failure = "simulated: the disk is gone"
    try:
        async with server.client() as http:
            health = await http.get("/healthz")
            assert health.status_code == 503 and health.json()["database"] != "ok"
            refused = await http.post("/update_cell", json={"data": edit})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
            client = await Client.connect(server, "ann")
            await client.next("snapshot")
            await client.edit("e1", **edit)
            assert (await client.next("rejected", id="e1"))["error"]["code"] == "unavailable"
            await client.close()
    finally:
        server.services.db.failure = None


def test_a_database_that_cannot_grow_stops_the_writer_and_loses_nothing(data_dir, redis_url):
    limit = (data_dir / "ducksheet.duckdb").stat().st_size + 512 * 1024

    # the server may write no file past `limit` bytes (prlimit: no preexec_fn in a
    # process with threads)
    serve = [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        ["prlimit", f"--fsize={limit}", *serve, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    try:
        base = _running_on(process)
        spread = {"table": SUMMARY, "column": "net_amount", "condition": {}}
        with httpx.Client(base_url=base, timeout=DEADLINE) as http:
            outcomes = []
            for n in range(100):  # each spread rewrites every sales row: the WAL grows
                value = 10**6 * (1 + n % 2)  # doubled, halved, ...
                # ?wait answers as soon as persisting failed, well before its 30 s
                answer = http.post(
                    "/update_cell?wait=30", json={"data": {**spread, "value": value}}, timeout=20
                )
                outcomes.append(answer.status_code)
                if answer.status_code == 200 and not answer.json()["data"]["persisted"]:
                    break  # applied, and DuckDB failed before it could hold it
                if http.get("/healthz").status_code == 503:
                    break
            assert http.get("/healthz").json()["database"] != "ok", outcomes
            assert 500 not in outcomes, "an edit was lost as `internal`"
            refused = http.post("/update_cell", json={"data": {**spread, "value": 5}})
            assert refused.status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE)


def _running_on(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    seen = b""
    while not (found := re.search(rb"running on (http://127\.0\.0\.1:\d+)", seen)):
        chunk = process.stdout.read1(4096)
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    return found.group(1).decode()
