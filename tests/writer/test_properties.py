"""Property tests: any sequence of edits, spreads, holds and re-parentings keeps the
summary exact, every parent footing, held cells fixed and edited cells on target."""

from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

import duckdb
from conftest import SLOW
from helpers import assert_state_matches_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.catalog import SUMMARY
from protocol.edits import parse_edit, parse_hold
from protocol.spread import Leaf, spread
from server.analytics.check import footing_errors, summary_drift
from server.writer.batch import Limits
from server.writer.decide import Request
from server.writer.direct import DirectWriter, apply_batch

CELL = ("supplier", "brand", "family", "month")
_ids = count(1)


money = st.integers(-50_000_00, 500_000_00).map(lambda cents: f"{Decimal(cents) / 100:.2f}")
operation = st.one_of(
    st.tuples(
        st.just("leaf"),
        st.integers(0, 10**6),
        st.sampled_from(["quantity", "net_price"]),
        st.integers(-50, 500),
    ),
    st.tuples(
        st.just("spread"),
        st.integers(0, 10**6),
        st.sampled_from(["net_amount", "quantity"]),
        money,
        st.sampled_from(["proportional", "equal", "percent", "like"]),
        st.sampled_from([0, 1, 3, 7]),
        st.booleans(),
    ),
    st.tuples(
        st.just("hold"),
        st.integers(0, 10**6),
        st.booleans(),
        st.sampled_from([0, 1, 3]),
        st.booleans(),
    ),
    st.tuples(
        st.just("reparent"),
        st.integers(0, 10**6),
        st.sampled_from(["brand", "family"]),
        st.integers(0, 3),
    ),
    st.tuples(st.just("move"), st.integers(0, 10**6), st.integers(0, 730)),
    st.tuples(st.just("relink"), st.integers(0, 10**6), st.integers(0, 10**6)),
)


def pick(con: duckdb.DuckDBPyConnection, sql: str, index: int) -> tuple[Any, ...]:
    rows = con.execute(sql).fetchall()
    return rows[index % len(rows)]


def to_message(
    con: duckdb.DuckDBPyConnection, op: tuple[Any, ...], periods: bool = True
) -> tuple[str, dict[str, Any]]:
    kind = op[0]
    if kind == "leaf":
        (sale_id,) = pick(con, "SELECT sale_id FROM sales ORDER BY 1", op[1])
        # quantities are never negative (edits and imports alike); amounts may be
        value = abs(op[3]) if op[2] == "quantity" else f"{op[3]}.25"
        return "edit", {
            "table": "sales",
            "column": op[2],
            "value": value,
            "condition": {"sale_id": sale_id},
        }
    if kind == "move":
        (sale_id,) = pick(con, "SELECT sale_id FROM sales ORDER BY 1", op[1])
        date = con.execute("SELECT (DATE '2024-01-01' + ?::INTEGER)::VARCHAR", [op[2]]).fetchone()[
            0
        ]
        return "edit", {
            "table": "sales",
            "column": "invoice_date",
            "value": date,
            "condition": {"sale_id": sale_id},
        }
    if kind == "relink":  # a sale to another product (maybe of another brand)
        (sale_id,) = pick(con, "SELECT sale_id FROM sales ORDER BY 1", op[1])
        (product_id,) = pick(con, "SELECT product_id FROM product ORDER BY 1", op[2])
        return "edit", {
            "table": "sales",
            "column": "product_id",
            "value": product_id,
            "condition": {"sale_id": sale_id},
        }
    if kind == "reparent":
        (product_id,) = pick(con, "SELECT product_id FROM product ORDER BY 1", op[1])
        names = con.execute(f"SELECT DISTINCT {op[2]} FROM product ORDER BY 1").fetchall()
        value = names[op[3] % len(names)][0]
        return "edit", {
            "table": "product",
            "column": op[2],
            "value": value,
            "condition": {"product_id": product_id},
        }
    # a cell of a chosen level, a single month or the all-months total
    level, all_months = op[-2], op[-1]
    month = "month IS NULL" if all_months else "month IS NOT NULL"
    cells = (
        f"SELECT {', '.join(CELL)} FROM {SUMMARY} WHERE level = {level} AND {month} ORDER BY ALL"
    )
    cell = dict(zip(CELL, pick(con, cells, op[1]), strict=True))
    if kind == "hold":
        return "hold", {"condition": cell, "on": op[2]}
    value = op[3] if op[2] == "net_amount" else abs(int(Decimal(op[3])))
    if op[4] == "percent":  # the amount as a change from -100 % to +149.99 %
        value = f"{(int(Decimal(op[3]) * 100) % 25_000 - 10_000) / 100:.2f}"
    message = {"table": SUMMARY, "column": op[2], "value": value, "condition": cell}
    spread = op[4]
    if spread == "like" and cell["month"] is None:
        spread = "proportional"  # refused before it reaches a writer (tests/protocol)
    if spread == "like":  # another month's mix
        months = con.execute(
            f"SELECT DISTINCT month FROM {SUMMARY} WHERE month IS NOT NULL "
            f"AND month IS DISTINCT FROM ? ORDER BY 1",
            [cell["month"]],
        ).fetchall()
        message["like"] = {"period": months[op[1] % len(months)][0]}
    if periods and cell["month"] is None and spread != "like" and op[1] % 3 == 0:  # a year/quarter
        period = ("2024", "2024-Q2", "2025-Q4", "2025-Q1")[op[1] % 4]
        message["condition"] = {**cell, "month": None, "period": period}
    return "edit", {**message, "spread": spread}


def held_values(con: duckdb.DuckDBPyConnection) -> dict[tuple, tuple]:
    same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM h.{c}" for c in CELL)
    rows = con.execute(
        "SELECT h.supplier, h.brand, h.family, h.month, t.quantity, t.net_amount "
        f"FROM holds h LEFT JOIN {SUMMARY} t ON {same}"
    ).fetchall()
    return {row[:4]: row[4:] for row in rows}


def cell_value(con: duckdb.DuckDBPyConnection, condition: dict[str, Any], column: str) -> Any:
    clauses = " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in CELL)
    row = con.execute(
        f"SELECT {column} FROM {SUMMARY} WHERE {clauses}", [condition.get(c) for c in CELL]
    ).fetchone()
    return row[0] if row else None


@settings(
    max_examples=200 if SLOW else 30,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.lists(operation, min_size=1, max_size=4), min_size=1, max_size=6))
def test_any_sequence_keeps_the_summary_exact(fresh, batches):
    con = fresh()
    writer = DirectWriter(con)  # its working state carried from batch to batch
    for ops in batches:
        messages = [to_message(con, op) for op in ops]
        requests = [
            Request(f"5-{next(_ids)}", parse_edit(m) if kind == "edit" else parse_hold(m), "prop")
            for kind, m in messages
        ]
        held_before = held_values(con)
        payload = writer.apply(requests)
        # (c) cells held through the whole batch kept their value
        still_held = held_values(con)
        for key, value in held_before.items():
            if key in still_held:
                assert still_held[key] == value, key
        # (d) a spread that is the last request of its batch lands exactly on its value
        (kind, message), result = messages[-1], payload["results"][-1]
        # (a percent's target depends on the value before it, and a period is no stored
        # cell: tests/writer/test_spread_methods.py checks both)
        spread = message.get("spread")
        if (
            kind == "edit"
            and message["table"] == SUMMARY
            and spread != "percent"
            and "period" not in message["condition"]  # the cell is the months it sums
            and (result["status"] == "applied")
        ):
            expected = Decimal(str(message["value"]))
            assert cell_value(con, message["condition"], message["column"]) == expected
        # (a) equal to a fresh GROUPING SETS query, (b) every parent foots exactly
        assert summary_drift(con) == []
        assert footing_errors(con) == []
        # (e) the writer's working state is what DuckDB holds
        assert_state_matches_database(writer)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(0, 10**6),
    st.sampled_from([0, 1, 3, 7]),
    st.booleans(),
    st.sampled_from(["net_amount", "quantity"]),
    money,
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from(["quantity", "net_price"]),
            st.sampled_from(["0", "0.00", "-0.01", "-250.75", "3", "1999.99"]),
        ),
        max_size=12,
    ),
)
def test_proportional_spread_in_sql_matches_the_reference(
    fresh, index, level, all_months, column, value, held_index, prior
):
    """The writer's proportional spread gives exactly what protocol.spread computes
    (level by level below the cell: its child nodes, theirs, then the rows), also over
    rows edited first to zeros and negative amounts (spread over one or many
    family-months, as the level and the all-months flag choose)."""
    con = fresh()
    for sale_index, leaf_column, leaf_value in prior:
        (sale_id,) = pick(con, "SELECT sale_id FROM sales ORDER BY 1", sale_index)
        if leaf_column == "quantity":
            leaf_value = abs(int(Decimal(leaf_value)))
        edit = {"table": "sales", "column": leaf_column, "value": leaf_value}
        edit["condition"] = {"sale_id": sale_id}
        apply_batch(con, [Request(f"6-{next(_ids)}", parse_edit(edit), "p")], Limits())
    if held_index is not None:
        held = to_message(con, ("hold", held_index, True, 0, False))[1]
        apply_batch(con, [Request(f"6-{next(_ids)}", parse_hold(held), "p")], Limits())
    op = ("spread", index, column, value, "proportional", level, all_months)
    _, message = to_message(con, op, periods=False)
    condition = message["condition"]
    units = "CAST(s.net_price * 100 AS BIGINT)" if column == "net_amount" else "s.quantity"
    where = " AND ".join(
        f"p.{c} = ?" if c != "month" else "strftime(s.invoice_date, '%Y-%m') = ?"
        for c in CELL
        if condition[c] is not None
    )
    path = [f"p.{c}" for c in ("supplier", "brand", "family") if condition[c] is None]
    if condition["month"] is None:
        path.append("strftime(s.invoice_date, '%Y-%m')")
    path_sql = f"[{', '.join(path)}]" if path else "[]::VARCHAR[]"
    leaves_sql = (
        f"SELECT s.sale_id, {units}, {path_sql}, EXISTS (SELECT 1 FROM holds h WHERE "
        "(h.supplier IS NULL OR h.supplier = p.supplier) "
        "AND (h.brand IS NULL OR h.brand = p.brand) "
        "AND (h.family IS NULL OR h.family = p.family) "
        "AND (h.month IS NULL OR h.month = strftime(s.invoice_date, '%Y-%m'))) "
        f"FROM sales s JOIN product p USING (product_id) WHERE {where or 'TRUE'} "
        f"ORDER BY {path_sql}, s.sale_id"
    )
    params = [condition[c] for c in CELL if condition[c] is not None]
    leaves = [Leaf(k, tuple(p), v, h) for k, v, p, h in con.execute(leaves_sql, params).fetchall()]
    target = int(Decimal(str(message["value"])) * (100 if column == "net_amount" else 1))
    free = [leaf for leaf in leaves if not leaf.held]
    payload = apply_batch(con, [Request(f"6-{next(_ids)}", parse_edit(message), "p")], Limits())
    if not free or not sum(leaf.value for leaf in free):
        return  # handled by the reference itself (equal, all_held, zero sum)
    if column == "quantity" and target < sum(leaf.value for leaf in leaves if leaf.held):
        # the free rows would need negative quantities
        assert payload["results"][0]["error"]["code"] == "invalid_value"
        return
    assert payload["results"][0]["status"] == "applied"
    expected = {leaf.key: leaf.value for leaf in leaves} | spread(leaves, target, "proportional")
    assert {k: v for k, v, _, _ in con.execute(leaves_sql, params).fetchall()} == expected
