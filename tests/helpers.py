"""Helpers shared by the tests: requests for the writer, summary look-ups, and a
WebSocket client that keeps every frame it receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import orjson
import websockets

from protocol.catalog import SUMMARY
from protocol.edits import parse_edit
from server.analytics.check import footing_errors, summary_drift
from server.writer.batch import Limits
from server.writer.decide import Request
from server.writer.direct import DirectWriter, apply_batch
from server.writer.state import load

_ids = count(1)
# outcome code -> count, per property test; conftest prints them after the run
OUTCOME_REPORTS: dict[str, Counter[str]] = {}


def request(message: dict[str, Any], user: str = "ann") -> Request:
    return Request(f"1000-{next(_ids)}", parse_edit(message), user)


def apply(con: duckdb.DuckDBPyConnection, *messages: dict[str, Any]) -> dict[str, Any]:
    return apply_batch(con, [request(m) for m in messages], Limits())


def assert_exact(con: duckdb.DuckDBPyConnection) -> None:
    assert summary_drift(con) == []
    assert footing_errors(con) == []


def cell(con: duckdb.DuckDBPyConnection, **key: Any) -> tuple[int, Decimal]:
    clauses = " AND ".join(
        f"{c} IS NULL" if key.get(c) is None else f"{c} = ?"
        for c in ("supplier", "brand", "family", "month")
    )
    params = [key[c] for c in ("supplier", "brand", "family", "month") if key.get(c) is not None]
    row = con.execute(
        f"SELECT quantity, net_amount FROM {SUMMARY} WHERE {clauses}", params
    ).fetchone()
    assert row is not None, key
    return row


def families_of(con: duckdb.DuckDBPyConnection, supplier: str, brand: str, month: str) -> dict:
    return dict(
        con.execute(
            f"SELECT family, net_amount FROM {SUMMARY} WHERE level = 0 AND supplier = ? "
            "AND brand = ? AND month = ? ORDER BY family",
            [supplier, brand, month],
        ).fetchall()
    )


def a_brand_month(con: duckdb.DuckDBPyConnection) -> tuple[str, str, str]:
    """A brand-month with at least two families that have sales."""
    return con.execute(
        f"SELECT supplier, brand, month FROM {SUMMARY} WHERE level = 0 AND month IS NOT NULL "
        "GROUP BY ALL HAVING count(*) >= 2 ORDER BY sum(line_count) DESC LIMIT 1"
    ).fetchone()


def summary_edit(value: Any, **condition: Any) -> dict[str, Any]:
    return {"table": SUMMARY, "column": "net_amount", "value": value, "condition": condition}


TIMEOUT = 10


class Client:
    """A WebSocket client that keeps every frame it receives."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls, server, name: str, since: str | None = None, version: str | None = None
    ) -> Client:
        ws = await websockets.connect(server.ws_url, max_size=None)
        client = cls(ws)
        hello = {"type": "hello", "name": name, "since": since}
        await client.send(hello if version is None else {**hello, "version": version})
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def next(self, kind: str, **match: Any) -> dict[str, Any]:
        """The next frame of `kind` (matching fields), reading as needed."""
        for frame in self.frames:
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame
                self.frames.append(frame)

    async def next_n(self, kind: str, count: int) -> list[dict[str, Any]]:
        return [await self.next(kind) for _ in range(count)]

    async def edit(self, client_id: str, **edit: Any) -> None:
        await self.send({"type": "edit", "id": client_id, **edit})

    async def close(self) -> None:
        await self.ws.close()


async def all_persisted(server) -> None:
    """Wait until DuckDB holds everything decided so far. The writer publishes first and
    hands the batch to the persister after, so an idle persister may not have it yet:
    wait, as `?wait` does, for persisted_duck to reach the last request decided."""
    decided = server.services.writer.decided
    if decided is not None:
        held = await server.services.hub.wait_persisted(decided, 30)
        assert held, f"DuckDB did not reach {decided} within 30 s"


async def db_read(server, fn: Any, *args: Any) -> Any:
    """fn(cursor, *args) on a reader cursor once DuckDB holds everything decided."""
    await all_persisted(server)
    return await server.services.db.read(fn, *args)


async def read(server, sql: str, *params: Any) -> list[tuple]:
    return await db_read(server, lambda cur: cur.execute(sql, list(params)).fetchall())


async def some_sales(server, n: int) -> list[int]:
    rows = await read(server, "SELECT sale_id FROM sales ORDER BY sale_id LIMIT ?", n)
    return [r[0] for r in rows]


@contextlib.contextmanager
def serve_process(data: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`ducksheet serve` on port 0 as a child process over `data`, for tools that call the
    server synchronously; yields its base URL and log file, SIGTERM afterwards."""
    log = data / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(rb"running on (http://127\.0\.0\.1:\d+)", log.read_bytes())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield found.group(1).decode(), log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def assert_state_matches_database(writer: DirectWriter) -> None:
    """The writer's working state is exactly what a fresh load from DuckDB gives."""
    mine, fresh = writer.decider.state, load(writer.con)
    assert mine.summary == fresh.summary
    assert {k: (h.level, h.by) for k, h in mine.holds.items()} == {
        k: (h.level, h.by) for k, h in fresh.holds.items()
    }
    for name in ("sale_id", "invoice_date", "product_id", "customer_id", "quantity", "cents"):
        assert (getattr(mine.sales, name) == getattr(fresh.sales, name)).all(), name
    node_of = lambda state, k: None if k < 0 else state.nodes[k]  # noqa: E731
    assert [node_of(mine, k) for k in mine.row_node.tolist()] == [
        node_of(fresh, k) for k in fresh.row_node.tolist()
    ]
