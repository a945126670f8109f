"""Block edits, undo/redo and history end to end (DESIGN §12): WebSocket and REST against
a real server, Redis and DuckDB."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from helpers import Client, db_read, read, some_sales

from protocol.catalog import SUMMARY
from server.analytics.check import footing_errors, summary_drift


async def family_cells(server, n: int) -> list[dict[str, Any]]:
    rows = await read(
        server,
        f"SELECT supplier, brand, family, month, net_amount FROM {SUMMARY} "
        "WHERE level = 0 AND month IS NOT NULL ORDER BY ALL LIMIT ?",
        n,
    )
    return [
        dict(zip(("supplier", "brand", "family", "month", "net_amount"), r, strict=True))
        for r in rows
    ]


def cell_edit(cell: dict[str, Any], value: str) -> dict[str, Any]:
    condition = {k: cell[k] for k in ("supplier", "brand", "family", "month")}
    return {"table": SUMMARY, "column": "net_amount", "value": value, "condition": condition}


async def value_of(server, cell: dict[str, Any]) -> Decimal:
    rows = await read(
        server,
        f"SELECT net_amount FROM {SUMMARY} WHERE level = 0 AND supplier = ? AND brand = ? "
        "AND family = ? AND month = ?",
        *(cell[k] for k in ("supplier", "brand", "family", "month")),
    )
    return rows[0][0]


def money(measures: dict[str, Any]) -> Decimal:
    return Decimal(str(measures["net_amount"]))


async def exact(server) -> None:
    assert await db_read(server, summary_drift) == []
    assert await db_read(server, footing_errors) == []


async def test_a_pasted_block_reaches_everyone_and_undo_brings_it_back(server):
    ann, bob = await Client.connect(server, "ann"), await Client.connect(server, "bob")
    await ann.next("snapshot")
    await bob.next("snapshot")
    cells = await family_cells(server, 6)
    values = [f"{100 + i}.50" for i in range(len(cells))]
    await ann.send(
        {
            "type": "edit_many",
            "id": "p1",
            "edits": [cell_edit(c, v) for c, v in zip(cells, values, strict=True)],
        }
    )
    applied = await ann.next("applied", id="p1")
    update = await bob.next("updates")
    assert update["seq"] == applied["seq"]
    shown = {(r["family"], r["month"]): r for r in update["rows"] if r["level"] == 0}
    for cell, value in zip(cells, values, strict=True):
        row = shown[(cell["family"], cell["month"])]
        assert Decimal(str(row["net_amount"])) == Decimal(value) and row["changed_by"] == "ann"
        assert row["changed_at"].endswith("Z")
    for cell, value in zip(cells, values, strict=True):
        assert await value_of(server, cell) == Decimal(value)

    await ann.send({"type": "undo", "id": "u1"})
    undone = await ann.next("applied", id="u1")
    update = await bob.next("updates")
    assert update["seq"] == undone["seq"]
    for cell in cells:
        assert await value_of(server, cell) == cell["net_amount"]
    await ann.send({"type": "undo", "id": "u2"})
    rejected = await ann.next("rejected", id="u2")
    assert rejected["error"]["code"] == "nothing_to_undo"
    await exact(server)
    await ann.close()
    await bob.close()


async def test_a_bad_edit_in_a_block_is_refused_at_the_edge_with_its_index(server):
    ann = await Client.connect(server, "ann")
    await ann.next("snapshot")
    (cell,) = await family_cells(server, 1)
    edits = [cell_edit(cell, "1.00"), {**cell_edit(cell, "x"), "value": "not a number"}]
    await ann.send({"type": "edit_many", "id": "b1", "edits": edits})
    rejected = await ann.next("rejected", id="b1")
    assert rejected["error"]["index"] == 1 and rejected["error"]["code"] == "invalid_value"
    assert await value_of(server, cell) == cell["net_amount"]
    await ann.close()


async def test_rest_block_edit_undo_conflict_and_history(server):
    cells = await family_cells(server, 2)
    async with server.client() as http:
        r = await http.post(
            "/update_cells?wait=10",
            json={"data": {"edits": [cell_edit(cells[0], "10.00"), cell_edit(cells[1], "20.00")]}},
        )
        assert r.status_code == 200, r.text
        block = r.json()["data"]
        assert block["status"] == "applied" and block["persisted"] is True
        # another socket user changes one of the cells: REST's undo is refused, in words
        bob = await Client.connect(server, "bob")
        await bob.next("snapshot")
        await bob.edit("e1", **cell_edit(cells[0], "11.00"))
        await bob.next("applied", id="e1")
        r = await http.post("/undo?wait=10", json={})
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "undo_conflict" and error["by"] == ["bob"]
        assert "bob" in error["message"]
        assert [(c["family"], c["month"]) for c in error["cells"]] == [
            (cells[0]["family"], cells[0]["month"])
        ]
        await bob.send({"type": "undo", "id": "u1"})
        await bob.next("applied", id="u1")
        await bob.close()
        r = await http.post("/undo?wait=10", json={})
        assert r.json()["data"]["status"] == "applied", r.text
        r = await http.post("/redo?wait=10", json={})
        assert r.json()["data"]["status"] == "applied", r.text

        condition = json.dumps({k: cells[0][k] for k in ("supplier", "brand", "family", "month")})
        r = await http.get("/history", params={"table": SUMMARY, "condition": condition})
        assert r.status_code == 200, r.text
        events = r.json()["data"]["events"]
        assert [e["action"] for e in events] == ["redo", "undo", "undo", "spread", "edit_many"]
        assert [e["user"] for e in events] == ["rest", "rest", "bob", "bob", "rest"]
        assert money(events[-1]["old"]) == cells[0]["net_amount"]
        assert money(events[-1]["new"]) == Decimal("10.00")
        assert money(events[0]["new"]) == Decimal("10.00") and events[0]["rows"] > 0
        r = await http.get("/history", params={"user": "bob"})
        assert [e["action"] for e in r.json()["data"]["events"]] == ["undo", "spread"]
        before = events[1]["seq"]
        r = await http.get(
            "/history", params={"table": SUMMARY, "condition": condition, "before": before}
        )
        assert [e["action"] for e in r.json()["data"]["events"]] == ["undo", "spread", "edit_many"]
        r = await http.get("/history", params={"table": "sales", "condition": "{}"})
        assert r.status_code == 422
    await exact(server)


async def test_sales_row_history_and_snapshot_remember_who_changed_what(server):
    (sale_id,) = await some_sales(server, 1)
    async with server.client() as http:
        edit = {
            "table": "sales",
            "column": "net_price",
            "value": "12.34",
            "condition": {"sale_id": sale_id},
        }
        r = await http.post("/update_cell?wait=10", json={"data": edit})
        assert r.json()["data"]["status"] == "applied"
        r = await http.get(
            "/history", params={"table": "sales", "condition": json.dumps({"sale_id": sale_id})}
        )
        (event,) = r.json()["data"]["events"]
        assert event["action"] == "edit" and list(event["new"]) == ["net_price"]
        assert Decimal(str(event["new"]["net_price"])) == Decimal("12.34")
        assert event["rows"] == 1 and event["user"] == "rest"
    ann = await Client.connect(server, "ann")
    snapshot = await ann.next("snapshot")
    changed = [r for r in snapshot["rows"] if r.get("changed_by") == "rest"]
    assert {r["level"] for r in changed} == {0, 1, 3, 7}
    await ann.close()


async def test_a_condition_edit_is_in_the_history_of_the_cells_it_moved(server):
    sale_ids = await some_sales(server, 2)
    (supplier, brand, family, month) = (
        await read(
            server,
            "SELECT p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') "
            "FROM sales s JOIN product p USING (product_id) WHERE s.sale_id = ?",
            sale_ids[0],
        )
    )[0]
    async with server.client() as http:
        edit = {
            "table": "sales",
            "column": "quantity",
            "value": 3,
            "condition": f"sale_id IN ({sale_ids[0]}, {sale_ids[1]})",
        }
        r = await http.post("/update_cell?wait=10", json={"data": edit})
        assert r.json()["data"]["status"] == "applied", r.text
        cell = {"supplier": supplier, "brand": brand, "family": family, "month": month}
        r = await http.get("/history", params={"table": SUMMARY, "condition": json.dumps(cell)})
        (event,) = r.json()["data"]["events"]
        assert event["action"] == "edit" and event["old"] is None and event["rows"] == 2
        assert (
            event["new"]["quantity"]
            == (
                await read(
                    server,
                    f"SELECT quantity FROM {SUMMARY} WHERE level = 0 AND supplier = ? "
                    "AND brand = ? AND family = ? AND month = ?",
                    supplier,
                    brand,
                    family,
                    month,
                )
            )[0][0]
        )
