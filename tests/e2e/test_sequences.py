"""Property test through the public contract: any sequence of requests sent over REST
to a real server (zeros, negative amounts, several family-months, holds and edits of
held cells, cells with nothing below, children that cancel out, stale `expect`s, rows
that do not exist) keeps the summary equal to a fresh GROUPING SETS query, every parent
footing, held cells fixed and applied spreads on target; and the strategies reach every
outcome an edit or a hold can get."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import redis
from conftest import SLOW, run_server
from helpers import OUTCOME_REPORTS, read
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol.catalog import SUMMARY
from server.analytics.check import footing_errors, summary_drift
from server.config import Settings

CELL = ("supplier", "brand", "family", "month")
MAX_ROWS = 20  # max_rows_per_edit of the server under test, so `too_many_rows` is reachable
# every outcome an edit or hold can get from the writer (imports and `internal` aside)
OUTCOMES = {
    "applied",
    "conflict",
    "held",
    "all_held",
    "nothing_to_spread",
    "cannot_spread_proportionally",
    "no_rows",
    "too_many_rows",
    "unknown_reference",
    "invalid_value",
    "bad_condition",
}
reached: Counter[str] = Counter()
OUTCOME_REPORTS["tests/e2e/test_sequences.py"] = reached

index = st.integers(0, 10**6)
amount = st.one_of(
    st.just("0"),
    st.integers(-50_000_00, 500_000_00).map(lambda cents: f"{Decimal(cents) / 100:.2f}"),
)
level = st.sampled_from([0, 1, 3, 7])
operation = st.one_of(
    st.tuples(st.just("leaf"), index, st.sampled_from(["quantity", "net_price"]), amount),
    st.tuples(
        st.just("spread"),
        index,
        level,
        st.booleans(),  # the all-months total
        st.sampled_from(["net_amount", "quantity"]),
        st.one_of(amount, st.just("1000000000001")),  # the last is past the summary's range
        st.sampled_from(["proportional", "equal"]),
        st.sampled_from([None, "right", "wrong"]),  # expect
    ),
    st.tuples(st.just("hold"), index, st.sampled_from([0, 1]), st.booleans(), st.booleans()),
    st.tuples(st.just("edit_held"), index, amount),
    st.tuples(st.just("below_held"), index, amount),
    st.tuples(st.just("cancel"), index, st.integers(1, 10_000)),
    st.tuples(st.just("missing"), index, amount),
    st.tuples(st.just("many"), st.integers(0, 100)),
    st.tuples(st.just("ghost"), st.integers(0, 100)),
    st.tuples(st.just("relink"), index, st.sampled_from([None, 10**6])),
    st.tuples(st.just("move"), index, st.integers(0, 730)),
    st.tuples(st.just("reparent"), index, st.sampled_from(["brand", "family"]), index),
    st.tuples(st.just("multi_expect"), index),
)


async def pick(server: Any, sql: str, i: int, *params: Any) -> tuple[Any, ...] | None:
    rows = await read(server, sql, *params)
    return rows[i % len(rows)] if rows else None


async def a_cell(server: Any, i: int, lvl: int, all_months: bool) -> dict[str, Any]:
    month = "month IS NULL" if all_months else "month IS NOT NULL"
    sql = f"SELECT {', '.join(CELL)} FROM {SUMMARY} WHERE level = ? AND {month} ORDER BY ALL"
    row = await pick(server, sql, i, lvl)
    assert row is not None
    return dict(zip(CELL, row, strict=True))


async def sale(server: Any, i: int) -> int:
    row = await pick(server, "SELECT sale_id FROM sales ORDER BY 1", i)
    assert row is not None
    return row[0]


def summary(column: str, value: Any, cell: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"table": SUMMARY, "column": column, "value": value, "condition": cell, **extra}


def sales_edit(column: str, value: Any, condition: Any, **extra: Any) -> dict[str, Any]:
    return {"table": "sales", "column": column, "value": value, "condition": condition, **extra}


def whole(value: str) -> int:
    return abs(int(Decimal(value)))


async def requests_of(server: Any, op: tuple[Any, ...]) -> list[tuple[str, dict[str, Any]]]:
    """The REST requests (path, data) an operation stands for, against the current state."""
    kind = op[0]
    if kind == "leaf":
        value = whole(op[3]) if op[2] == "quantity" else op[3]
        return [("/update_cell", sales_edit(op[2], value, {"sale_id": await sale(server, op[1])}))]
    if kind == "spread":
        _, i, lvl, all_months, column, value, method, expect = op
        cell = await a_cell(server, i, lvl, all_months)
        value = value if column == "net_amount" else whole(value)
        extra: dict[str, Any] = {"spread": method}
        if expect:
            (current,) = (await cell_values(server, cell, column)) or (0,)
            extra["expect"] = str(current if expect == "right" else current + 1)
        return [("/update_cell", summary(column, value, cell, **extra))]
    if kind == "hold":
        cell = await a_cell(server, op[1], op[2], op[3])
        return [("/holds", {"condition": cell, "on": op[4]})]
    if kind in ("edit_held", "below_held"):
        held = await pick(server, f"SELECT {', '.join(CELL)} FROM holds ORDER BY ALL", op[1])
        if held is None:  # nothing held yet: hold something first
            cell = await a_cell(server, op[1], 0, True)
            return [("/holds", {"condition": cell, "on": True})]
        cell = dict(zip(CELL, held, strict=True))
        if kind == "below_held" and cell["month"] is None and cell["family"] is not None:
            # a family's month below its held all-months total: every row below is frozen
            row = await pick(
                server,
                f"SELECT month FROM {SUMMARY} WHERE level = 0 AND supplier = ? AND brand = ? "
                "AND family = ? AND month IS NOT NULL ORDER BY 1",
                op[1],
                cell["supplier"],
                cell["brand"],
                cell["family"],
            )
            cell = {**cell, "month": row[0] if row else "2024-01"}
        return [("/update_cell", summary("net_amount", op[2], cell))]
    if kind == "cancel":  # a family-month whose rows cancel out: proportional is impossible
        row = await pick(
            server,
            f"SELECT {', '.join(CELL)} FROM {SUMMARY} WHERE level = 0 AND month IS NOT NULL "
            "AND line_count BETWEEN 2 AND ? ORDER BY ALL",
            op[1],
            MAX_ROWS,
        )
        if row is None:
            return []
        cell = dict(zip(CELL, row, strict=True))
        ids = await sales_below(server, cell)
        condition = f"sale_id IN ({', '.join(map(str, ids))})"
        return [
            ("/update_cell", sales_edit("net_price", 0, condition)),
            ("/update_cell", sales_edit("net_price", op[2], {"sale_id": ids[0]})),
            ("/update_cell", sales_edit("net_price", -op[2], {"sale_id": ids[1]})),
            ("/update_cell", summary("net_amount", "100.00", cell, spread="proportional")),
        ]
    if kind == "missing":  # a month no sale is in: no rows below
        cell = await a_cell(server, op[1], 0, False)
        return [("/update_cell", summary("net_amount", op[2], {**cell, "month": "2031-05"}))]
    if kind == "many":
        return [("/update_cell", sales_edit("quantity", op[1], f"sale_id > {MAX_ROWS}"))]
    if kind == "ghost":
        return [("/update_cell", sales_edit("quantity", op[1], {"sale_id": 10**9}))]
    if kind == "relink":
        product = op[2]
        if product is None:
            row = await pick(server, "SELECT product_id FROM product ORDER BY 1", op[1])
            product = row[0] if row else 1
        target = {"sale_id": await sale(server, op[1])}
        return [("/update_cell", sales_edit("product_id", product, target))]
    if kind == "move":
        day = await read(server, "SELECT (DATE '2024-01-01' + ?::INTEGER)::VARCHAR", op[2])
        target = {"sale_id": await sale(server, op[1])}
        return [("/update_cell", sales_edit("invoice_date", day[0][0], target))]
    if kind == "reparent":
        product = await pick(server, "SELECT product_id FROM product ORDER BY 1", op[1])
        name = await pick(server, f"SELECT DISTINCT {op[2]} FROM product ORDER BY 1", op[3])
        assert product is not None and name is not None
        edit = {"table": "product", "column": op[2], "value": name[0]}
        return [("/update_cell", {**edit, "condition": {"product_id": product[0]}})]
    assert kind == "multi_expect"
    return [("/update_cell", sales_edit("quantity", 1, "sale_id <= 3", expect=1))]


async def sales_below(server: Any, cell: dict[str, Any]) -> list[int]:
    rows = await read(
        server,
        "SELECT s.sale_id FROM sales s JOIN product p USING (product_id) WHERE p.supplier = ? "
        "AND p.brand = ? AND p.family = ? AND strftime(s.invoice_date, '%Y-%m') = ? ORDER BY 1",
        *(cell[c] for c in CELL),
    )
    return [r[0] for r in rows]


async def cell_values(server: Any, cell: dict[str, Any], column: str) -> tuple[Any, ...] | None:
    clauses = " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in CELL)
    rows = await read(
        server, f"SELECT {column} FROM {SUMMARY} WHERE {clauses}", *(cell[c] for c in CELL)
    )
    return rows[0] if rows else None


async def held_values(server: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM h.{c}" for c in CELL)
    rows = await read(
        server,
        "SELECT h.supplier, h.brand, h.family, h.month, t.quantity, t.net_amount "
        f"FROM holds h LEFT JOIN {SUMMARY} t ON {same}",
    )
    return {row[:4]: row[4:] for row in rows}


async def check_request(server: Any, http: httpx.AsyncClient, path: str, data: dict) -> None:
    held_before = await held_values(server)
    answer = await http.post(f"{path}?wait=20", json={"data": data})
    body = answer.json()
    assert answer.status_code != 202, "not decided within 20 s"
    outcome = body["data"]["status"] if answer.status_code == 200 else body["error"]["code"]
    assert outcome in OUTCOMES, body
    reached[outcome] += 1
    if (
        data.get("table") == SUMMARY
        and tuple(data["condition"].get(c) for c in CELL) in held_before
    ):
        assert outcome == "held", (data, body)  # a held cell itself is never edited
    held_after = await held_values(server)
    for key, value in held_before.items():  # a cell held throughout kept its value
        if key in held_after:
            assert held_after[key] == value, key
    if outcome == "applied" and data.get("table") == SUMMARY:
        (now,) = await cell_values(server, data["condition"], data["column"]) or (None,)
        assert now == Decimal(str(data["value"])), (data, now)
    assert await server.services.db.read(summary_drift) == []
    assert await server.services.db.read(footing_errors) == []


async def run_sequence(db: Path, redis_url: str, ops: list[tuple[Any, ...]]) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.flushall()
    settings = Settings(data_dir=db.parent, redis_url=redis_url, max_rows_per_edit=MAX_ROWS)
    async with run_server(settings) as server, server.client() as http:
        for op in ops:
            for path, data in await requests_of(server, op):
                await check_request(server, http, path, data)
    with duckdb.connect(str(db), read_only=True) as con:  # what `ducksheet check` checks
        assert summary_drift(con) == [] and footing_errors(con) == []


EXAMPLES = 150 if SLOW else 15


@settings(
    max_examples=EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=8))
# every outcome, every run: hypothesis draws the rest
@example(ops=[("hold", 3, 0, True, True), ("edit_held", 0, "5.00"), ("below_held", 0, "7")])
@example(ops=[("cancel", 5, 250), ("missing", 1, "10.00"), ("many", 3), ("ghost", 1)])
@example(
    ops=[
        ("relink", 2, 10**6),
        ("multi_expect", 0),
        ("spread", 1, 1, False, "net_amount", "0", "proportional", "wrong"),
    ]
)
@example(
    ops=[
        ("spread", 0, 7, True, "quantity", "1000000000001", "equal", None),
        ("spread", 4, 0, False, "net_amount", "-12.34", "proportional", "right"),
        ("spread", 4, 0, False, "net_amount", "80.00", "proportional", None),
    ]
)
def test_any_request_sequence_over_rest_keeps_the_summary_exact(
    tiny_db: Path, tmp_path: Path, redis_url: str, ops: list[tuple[Any, ...]]
) -> None:
    data = tmp_path / f"example-{os.getpid()}-{sum(reached.values())}"
    data.mkdir()
    shutil.copy(tiny_db, data / "ducksheet.duckdb")
    try:
        asyncio.run(run_sequence(data / "ducksheet.duckdb", redis_url, ops))
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_the_sequences_reached_every_outcome() -> None:
    """Runs after the property above (file order): every outcome code was reached."""
    assert set(reached) >= OUTCOMES, f"never reached: {OUTCOMES - set(reached)}; {reached}"
