"""Faults against real processes: kill -9 and SIGTERM under load, Redis restarts, a
client that stops reading, a request that makes DuckDB raise. Every acknowledged edit
must be applied exactly once, and resuming clients must see every update once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
import redis as redis_sync
import websockets
from conftest import run_server
from helpers import Client, db_read, read, summary_edit

from protocol.catalog import CELL_KEY, SUMMARY
from protocol.codec import loads, parse_seq
from server.analytics.check import summary_drift
from server.config import Settings
from server.store.embedded_redis import EmbeddedRedis
from server.store.streams import DEAD_LETTERS, FIELD, RESPONSES

CYCLES = int(os.environ.get("DUCKSHEET_FAULT_CYCLES", "2"))  # a kill -9, then a SIGTERM
SLOW_CYCLES = int(os.environ.get("DUCKSHEET_SLOW_FAULT_CYCLES", "20"))  # SLOW=1 make test
DEADLINE = 60.0  # seconds any awaited event may take before the test fails


SERVE = [sys.executable, "-m", "server.cli", "serve"]


class ServerProcess:
    """`ducksheet serve` as a child process on port 0, its output in <data>/server.log."""

    def __init__(self, data_dir: Path, redis_url: str | None) -> None:
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        self.env = {**os.environ}
        self.env.pop("REDIS_URL", None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.offset = 0  # where the log of the current run starts

    def start(self) -> str:
        offset = self.offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*SERVE, "--data-dir", str(self.data_dir), "--port", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited during start; see {self.log}")
            found = re.search(
                rb"running on http://127\.0\.0\.1:(\d+)", self.log.read_bytes()[offset:]
            )
            if found:
                self.port = int(found.group(1))
                return f"http://127.0.0.1:{self.port}"
            time.sleep(0.05)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        """Kill it if it still runs (its roles die with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"no exit 30 s after signal {sig}; see {self.log}") from None
        if sig == signal.SIGTERM:  # graceful: uvicorn re-raises the signal once done
            assert code in (0, -signal.SIGTERM), f"SIGTERM under load: exit {code}; {self.log}"
            assert b"Application shutdown complete" in self.log.read_bytes()[self.offset :]


async def until(condition: Any, what: str, deadline: float = DEADLINE) -> None:
    """Wait for `condition()` to hold (polled), failing with `what` after `deadline` s."""
    try:
        async with asyncio.timeout(deadline):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} (not within {deadline:.0f} s)") from None


class Load:
    """What the edit load sent and what it heard back, across server restarts. Every edit
    sets a sale's quantity to a number used once, so the final quantity says which edit
    landed last."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}  # number -> sale_id, in sending order
        self.acknowledged: dict[str, tuple[int, int]] = {}  # request id -> (sale_id, number)
        self.refused: int = 0  # 503 while Redis is away
        self.timeouts: int = 0  # requests that got no answer at all

    def next_number(self) -> int:
        return max(self.sent, default=0) + 1


async def edit_load(base: str, sales: list[int], load: Load, stop: asyncio.Event) -> None:
    """Uniquely numbered REST edits, one at a time, until `stop`. A server that is down
    is retried; a request that gets no answer within the client's timeout is counted."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            number = load.next_number()
            sale_id = sales[number % len(sales)]
            load.sent[number] = sale_id
            edit = {"table": "sales", "column": "quantity", "value": number}
            try:
                response = await http.post(
                    "/update_cell", json={"data": {**edit, "condition": {"sale_id": sale_id}}}
                )
            except httpx.TimeoutException:
                load.timeouts += 1
                continue
            except httpx.HTTPError:  # the server is down
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 202:
                load.acknowledged[response.json()["data"]["request_id"]] = (sale_id, number)
            else:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "unavailable"
                load.refused += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.002)  # pacing: a steady load, not a flood


async def wait_applied(base: str, request_ids: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        async with asyncio.timeout(60):
            for request_id in request_ids:
                while True:  # the poll waits only for a request still queued
                    response = await http.get(f"/requests/{request_id}")
                    if response.json()["data"]["status"] != "queued":
                        break
                    await asyncio.sleep(0.02)


def check_exactly_once(db_file: Path, load: Load) -> None:
    acknowledged = load.acknowledged
    with duckdb.connect(str(db_file), read_only=True) as con:
        log = con.execute("SELECT request_id, status FROM request_log").fetchall()
        ids = [r for r, _ in log]
        assert len(ids) == len(set(ids)), "a request was applied twice"
        statuses = dict(log)
        missing = [r for r in acknowledged if r not in statuses]
        assert not missing, f"{len(missing)} acknowledged edits lost"
        assert {statuses[r] for r in acknowledged} == {"applied"}
        final = dict(con.execute("SELECT sale_id, quantity FROM sales").fetchall())
        assert summary_drift(con) == []
    # One request at a time, so stream order is sending order: a sale ends with its last
    # acknowledged number, or with a later one whose answer the crash swallowed.
    acked_numbers = {number for _, number in acknowledged.values()}
    last_acked: dict[int, int] = {}
    for sale_id, number in acknowledged.values():
        last_acked[sale_id] = max(number, last_acked.get(sale_id, 0))
    for sale_id, number in last_acked.items():
        unanswered_later = {
            n
            for n, s in load.sent.items()
            if s == sale_id and n > number and n not in acked_numbers
        }
        assert final[sale_id] in {number} | unanswered_later, (sale_id, final[sale_id], number)


def cell_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in CELL_KEY)


def check_published_outcomes_hold(db: Path, entries: list[tuple[bytes, dict]]) -> None:
    """Every outcome published before a crash is the one DuckDB holds after recovery
    (re-decided requests came out the same), and no request was published twice."""
    published: dict[str, tuple[str, str | None]] = {}
    for _, fields in entries:
        for result in loads(fields[FIELD])["results"]:
            assert result["request"] not in published, f"{result['request']} published twice"
            published[result["request"]] = (result["status"], result.get("error", {}).get("code"))
    with duckdb.connect(str(db), read_only=True) as con:
        held = {
            row[0]: (row[1], row[2])
            for row in con.execute("SELECT request_id, status, code FROM request_log").fetchall()
        }
    assert published and {k: held.get(k) for k in published} == published


class Viewer:
    """A WebSocket viewer that resumes with `since` after every disconnect, and keeps
    the summary as it was shown: its snapshots with every update applied on top."""

    def __init__(self) -> None:
        self.seqs: list[str] = []
        self.last: str | None = None
        self.first = "0-0"  # the seq of the first snapshot
        self.resyncs = 0
        self.cells: dict[tuple[Any, ...], tuple[Any, Any]] = {}

    def show(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("deleted"):
                self.cells.pop(cell_key(row), None)
            else:
                self.cells[cell_key(row)] = (row["quantity"], row["net_amount"])

    async def follow(self, base_of: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                url = base_of().replace("http://", "ws://") + "/ws"
                async with websockets.connect(url, open_timeout=2, max_size=None) as ws:
                    hello = {"type": "hello", "name": "viewer", "since": self.last}
                    await ws.send(orjson.dumps(hello).decode())
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        if frame["type"] == "snapshot":
                            self.first = self.first if self.last else frame["seq"]
                            self.last = frame["seq"]
                            self.cells = {}
                            self.show(frame["rows"])
                        elif frame["type"] == "resync":
                            self.resyncs += 1
                        elif frame["type"] == "updates":
                            self.seqs.append(frame["seq"])
                            self.last = frame["seq"]
                            self.show(frame["rows"])
            except (OSError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(0.05)


async def settled(redis_url: str, base: str) -> tuple[list[Any], dict[str, Any]]:
    """The published entries and the summary page once nothing more is published: the
    requests in flight at a kill (never acknowledged) are decided after the restart,
    possibly after the acknowledged ones were all applied."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with asyncio.timeout(DEADLINE):
            while True:
                with redis_sync.Redis.from_url(redis_url) as r:
                    entries = r.xrange(RESPONSES)
                newest = entries[-1][0].decode()
                params = {"limit": 1000, "min_seq": newest}
                page = (await http.get(f"/view_table/{SUMMARY}", params=params)).json()
                if page["data"]["seq"] == newest:
                    return entries, page
                await asyncio.sleep(0.1)


async def kill_and_restart_under_load(
    data_dir: Path, redis_url: str, embedded: bool, cycles: int
) -> None:
    server = ServerProcess(data_dir, None if embedded else redis_url)
    try:
        await _cycles_under_load(server, data_dir, redis_url, embedded, cycles)
    finally:
        server.kill()  # a failed check leaves no server behind


async def _cycles_under_load(
    server: ServerProcess, data_dir: Path, redis_url: str, embedded: bool, cycles: int
) -> None:
    base = server.start()
    async with httpx.AsyncClient(base_url=base) as http:
        rows = (await http.get("/view_table/sales", params={"limit": 50})).json()["data"]["rows"]
    sales = [row["sale_id"] for row in rows]
    load = Load()
    viewer = Viewer()
    stop_viewer = asyncio.Event()
    viewing = asyncio.create_task(
        viewer.follow(lambda: f"http://127.0.0.1:{server.port}", stop_viewer)
    )
    rng = random.Random(5)
    for cycle in range(cycles):
        stop = asyncio.Event()
        running = asyncio.create_task(edit_load(base, sales, load, stop))
        # the fault comes after a random number of acknowledged edits
        target = len(load.acknowledged) + rng.randint(5, 60)
        await until(lambda t=target: len(load.acknowledged) >= t, "the load made no progress")
        # mostly kill -9; every third cycle (the second of three) a graceful SIGTERM,
        # in a thread: the load's client keeps running and finishes a request it began
        sig = signal.SIGTERM if cycle % 3 == 1 else signal.SIGKILL
        await asyncio.to_thread(server.stop, sig)
        stop.set()
        await running
        base = server.start()
    await wait_applied(base, list(load.acknowledged))
    url = redis_url if not embedded else f"unix://{data_dir / 'redis.sock'}"
    entries, page = await settled(url, base)
    published = [entry_id.decode() for entry_id, _ in entries]
    await until(lambda: viewer.last == published[-1], "the viewer never caught up")
    stop_viewer.set()
    viewing.cancel()
    server.stop(signal.SIGTERM)

    assert len(load.acknowledged) > 20
    assert load.timeouts == 0, "requests went unanswered"
    check_exactly_once(data_dir / "ducksheet.duckdb", load)
    check_published_outcomes_hold(data_dir / "ducksheet.duckdb", entries)
    assert viewer.seqs == sorted(set(viewer.seqs), key=parse_seq), (
        "an update repeated or out of order"
    )
    if not viewer.resyncs:
        # every update after the first, in order; entries the hub read together come as
        # one frame under the last one's seq (README: updates), so some seqs are skipped
        after = [seq for seq in published if parse_seq(seq) > parse_seq(viewer.first)]
        assert set(viewer.seqs) <= set(after) and viewer.seqs[-1:] == after[-1:]
    # resynced or not, what the viewer was shown adds up to the summary as it is
    body = page["data"]
    assert body["total"] == len(body["rows"]) and body["seq"] == published[-1]
    table = {cell_key(row): (row["quantity"], row["net_amount"]) for row in body["rows"]}
    assert viewer.cells == table


@pytest.mark.parametrize("embedded", [False, True], ids=["external-redis", "embedded-redis"])
async def test_kill_9_and_sigterm_under_load_lose_and_double_nothing(data_dir, redis_url, embedded):
    await kill_and_restart_under_load(data_dir, redis_url, embedded, CYCLES)


@pytest.mark.slow
@pytest.mark.parametrize("embedded", [False, True], ids=["external-redis", "embedded-redis"])
async def test_long_fault_cycles(data_dir, redis_url, embedded):
    await kill_and_restart_under_load(data_dir, redis_url, embedded, SLOW_CYCLES)


async def applied_exactly_once(server, load: Load) -> None:
    async with server.client() as http, asyncio.timeout(DEADLINE):
        for request_id in load.acknowledged:
            status = "queued"
            while status == "queued":
                status = (await http.get(f"/requests/{request_id}")).json()["data"]["status"]
                if status == "queued":
                    await asyncio.sleep(0.05)
            assert status == "applied"
    log = await read(
        server, "SELECT request_id, count(*) FROM request_log GROUP BY 1 HAVING count(*) > 1"
    )
    assert log == []
    assert await db_read(server, summary_drift) == []


async def test_external_redis_restart_mid_load_loses_nothing(data_dir, tmp_path):
    with EmbeddedRedis(tmp_path / "external") as external:
        settings = Settings(data_dir=data_dir, redis_url=external.url)
        async with run_server(settings) as server:
            sales = [r[0] for r in await read(server, "SELECT sale_id FROM sales LIMIT 40")]
            load = Load()
            stop = asyncio.Event()
            running = asyncio.create_task(edit_load(server.base, sales, load, stop))
            await until(lambda: len(load.acknowledged) >= 20, "no edits before the restart")
            external.stop()  # SHUTDOWN: Redis writes its AOF and exits
            await until(lambda: load.refused >= 3, "edits during the outage were not refused")
            before = len(load.acknowledged)
            external.start()
            await until(lambda: len(load.acknowledged) >= before + 20, "no edits after it")
            stop.set()
            await running
            # refused at once, never left hanging (the load's client gives up after 10 s)
            assert load.timeouts == 0
            await applied_exactly_once(server, load)


async def test_embedded_redis_killed_mid_load_is_restarted_and_loses_nothing(data_dir):
    async with run_server(Settings(data_dir=data_dir)) as server:
        embedded = server.services.embedded
        sales = [r[0] for r in await read(server, "SELECT sale_id FROM sales LIMIT 40")]
        load = Load()
        stop = asyncio.Event()
        running = asyncio.create_task(edit_load(server.base, sales, load, stop))
        await until(lambda: len(load.acknowledged) >= 20, "no edits before the kill")
        killed = embedded.pid
        os.kill(killed, signal.SIGKILL)
        await until(
            lambda: embedded.running and embedded.pid != killed,
            "the watchdog did not restart the embedded Redis",
        )
        before = len(load.acknowledged)
        await until(lambda: len(load.acknowledged) >= before + 20, "no edits after the restart")
        stop.set()
        await running
        await applied_exactly_once(server, load)


def subscribed(server, user: str) -> Any:
    """The session of `user` once it said hello and follows the updates, else None."""
    for session in server.services.sessions:
        if session.user == user and session.subscriber in server.services.hub.subscribers:
            return session
    return None


class StuckClient:
    """A raw WebSocket client on a socket with a tiny receive buffer that says hello and
    then stops reading: only this shows real backpressure (a client library keeps reading
    into memory, and the kernel would absorb tens of MB with its default buffers)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.received = b""
        while b"\r\n\r\n" not in self.received:  # the handshake response
            self.received += self.sock.recv(4096)
        self._scanned = self.received.index(b"\r\n\r\n") + 4  # frames read up to here
        self._send(0x1, b'{"type":"hello","name":"stuck"}')

    def _send(self, opcode: int, payload: bytes) -> None:
        """A masked client frame of at most 125 bytes."""
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _answer_pings(self) -> None:
        """Pong every ping received so far, as a live client does: a reader that only
        lags must not be closed for missing pings on a slow day."""
        data = self.received
        while len(data) - self._scanned >= 2:
            at = self._scanned
            opcode, length, offset = data[at] & 0x0F, data[at + 1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(data[at + 2 : at + 4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(data[at + 2 : at + 10], "big"), 10
            if len(data) < at + offset + length:
                return
            if opcode == 0x9:
                self._send(0xA, data[at + offset : at + offset + length])
            self._scanned = at + offset + length

    def trickle(self, behind: threading.Event, stop: threading.Event) -> None:
        """Once the server has had to queue frames (`behind`), read in short bursts until
        `stop`: catching up while new frames keep coming."""
        behind.wait()
        self.sock.settimeout(0.01)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                for _ in range(4):
                    self.received += self.sock.recv(1 << 16)
            self._answer_pings()
            time.sleep(0.02)

    def frames(self, timeout: float, until: bytes | None = None) -> list[tuple[int, bytes]]:
        """Read everything now: (opcode, payload) of each frame received, until nothing
        came for `timeout` seconds; with `until`, first wait up to 60 s for those bytes."""
        data = self.received
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            self.sock.settimeout(60)
            while until is not None and until not in data and (chunk := self.sock.recv(1 << 20)):
                data += chunk
            self.sock.settimeout(timeout)
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        self.sock.close()
        data = data[data.index(b"\r\n\r\n") + 4 :]  # the handshake response
        frames = []
        while len(data) >= 2:
            opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(data[2:10], "big"), 10
            frames.append((opcode, data[offset : offset + length]))
            data = data[offset + length :]
        return frames

    def close_code(self, timeout: float) -> int | None:
        """Read everything now; the code of the close frame at the end, if any."""
        closes = [payload for opcode, payload in self.frames(timeout) if opcode == 0x8]
        return int.from_bytes(closes[-1][:2], "big") if closes else None


async def test_a_client_that_stops_reading_is_closed_and_others_keep_up(data_dir, redis_url):
    settings = Settings(data_dir=data_dir, redis_url=redis_url, send_queue=20)
    async with run_server(settings) as server:
        reader = await Client.connect(server, "reader")
        await reader.next("snapshot")
        stuck = await asyncio.to_thread(StuckClient, int(server.base.rsplit(":", 1)[1]))
        await until(lambda: subscribed(server, "stuck"), "the stuck client never said hello")
        seen: list[str] = []

        async def read_along() -> None:  # the reader reads as it goes; the stuck socket never
            while True:
                frame = orjson.loads(await reader.ws.recv())
                if frame["type"] == "updates":
                    seen.append(frame["seq"])

        reading = asyncio.create_task(read_along())
        editor = await Client.connect(server, "editor")
        await editor.next("snapshot")
        for n in range(120):  # spreads over every row: big frames
            await editor.edit(f"s{n}", **summary_edit(1_000_000 + n))
            last = (await editor.next("applied", id=f"s{n}"))["seq"]
            editor.frames.clear()
        await until(lambda: last in seen, "the reader never got the last update")
        assert seen == sorted(set(seen), key=parse_seq)  # each once, in order
        code = await asyncio.to_thread(stuck.close_code, 3)
        assert code == 1013
        reading.cancel()
        await reader.close()
        await editor.close()


async def test_a_slow_reader_gets_every_update_in_order(server):
    # Frames go straight to an idle socket and queue behind one that flow control paused;
    # a reader that falls behind and catches up while updates keep coming must see each
    # seq once, in order.
    slow = await asyncio.to_thread(StuckClient, int(server.base.rsplit(":", 1)[1]))
    await until(lambda: subscribed(server, "stuck"), "the slow client never said hello")
    session = subscribed(server, "stuck")
    queued: list[int] = []
    behind, stop = threading.Event(), threading.Event()
    trickle = threading.Thread(target=slow.trickle, args=(behind, stop))
    trickle.start()

    async def watch() -> None:
        while not stop.is_set():
            queued.append(session.subscriber.queue.qsize())
            if queued[-1]:
                behind.set()
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    editor = await Client.connect(server, "editor")
    after_behind = 0  # edits sent since the slow socket first fell behind
    try:
        await editor.next("snapshot")
        for n in range(150):
            edit = summary_edit(1_000_000 + n)  # a spread over every row: big frames
            await editor.edit(f"s{n}", **edit)
            last = (await editor.next("applied", id=f"s{n}"))["seq"]
            editor.frames.clear()
            after_behind += behind.is_set()
            if after_behind > 30:  # it fell behind, and updates kept coming: enough
                break
    finally:
        stop.set()
        behind.set()
        await watching
        await asyncio.to_thread(trickle.join)
        await editor.close()
    assert max(queued) > 0, "the slow socket never fell behind: the test shows nothing"
    # the updates frame that carries the last seq, however long the slow socket takes
    frames = await asyncio.to_thread(slow.frames, 3, f'"seq":"{last}"'.encode())
    seqs = [
        parse_seq(message["seq"])
        for message in (orjson.loads(payload) for opcode, payload in frames if opcode == 0x1)
        if message["type"] == "updates"
    ]
    assert seqs == sorted(set(seqs)) and seqs[-1] == parse_seq(last)
    assert any(len(payload) > 65_535 for _, payload in frames)  # 64-bit lengths too


async def test_a_request_that_makes_duckdb_raise_is_dead_lettered(server, redis_url):
    # A CHECK constraint the catalog knows nothing of (added here, on the writer's own
    # connection): the edit passes every check at the edge and in the writer, and DuckDB
    # raises however often the writer tries. (Values that would overflow a column are
    # refused before DuckDB sees them: tests/test_hardening.py.)
    def add_check(con):
        con.execute("ALTER TABLE customer RENAME TO customer_old")
        con.execute(
            "CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, customer_name VARCHAR "
            "NOT NULL, email VARCHAR NOT NULL, region VARCHAR NOT NULL, segment VARCHAR "
            "NOT NULL CHECK (length(segment) < 30))"
        )
        con.execute("INSERT INTO customer SELECT * FROM customer_old")
        con.execute("DROP TABLE customer_old")

    await server.services.db.write(add_check)
    refused = {
        "table": "customer",
        "column": "segment",
        "value": "x" * 40,
        "condition": {"customer_id": 1},
    }
    fine = {"table": "sales", "column": "quantity", "value": 7, "condition": {"sale_id": 1}}
    async with server.client() as http:
        first = await http.post("/update_cell", json={"data": refused})
        second = await http.post("/update_cell?wait=10", json={"data": fine})
        assert second.json()["data"]["status"] == "applied"
        status = (await http.get(f"/requests/{first.json()['data']['request_id']}")).json()["data"]
    assert status["status"] == "rejected" and status["error"]["code"] == "internal"
    assert "CHECK" not in status["error"]["message"]  # DuckDB's words stay server-side
    r = redis_sync.Redis.from_url(redis_url)
    dead = r.xrange(DEAD_LETTERS)
    r.close()
    assert len(dead) == 1
    why = orjson.loads(dead[0][1][b"why"])
    assert why["request"] == first.json()["data"]["request_id"] and why["attempts"] == 3
    assert await read(server, "SELECT max(length(segment)) < 30 FROM customer") == [(True,)]
    assert await db_read(server, summary_drift) == []


async def test_payloads_committed_but_not_published_go_out_in_seq_order(data_dir, redis_url):
    # as after a crash between COMMIT and XADD: two batches (the writer publishes one while
    # it applies the next) whose seqs sort differently as text and as stream ids
    seqs = ["5-9", "5-10"]
    with duckdb.connect(str(data_dir / "ducksheet.duckdb")) as con:
        for seq in seqs:
            payload = {"seq": seq, "prev": "0-0", "rows": [], "base": [], "holds": []}
            payload |= {"by": [], "results": []}
            con.execute(
                "INSERT INTO _outbox VALUES (?, ?, ?)", [seq, [seq], orjson.dumps(payload).decode()]
            )
        con.execute("INSERT OR REPLACE INTO _applied VALUES (TRUE, ?)", [seqs[-1]])
    settings = Settings(data_dir=data_dir, redis_url=redis_url, port=0)
    async with run_server(settings):
        r = redis_sync.Redis.from_url(redis_url)
        try:
            await until(lambda: r.xlen(RESPONSES) == len(seqs), "the outbox was not published")
            published = [entry_id.decode() for entry_id, _ in r.xrange(RESPONSES)]
        finally:
            r.close()
    assert published == seqs
