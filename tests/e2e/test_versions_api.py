"""Versions end to end (DESIGN §13): create a budget from actual +5 % over REST, edit
it over a WebSocket and REST, read it, compare it with actual (JSON and CSV), lock it;
a real server, Redis and DuckDB."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from helpers import Client, read

from protocol.catalog import SUMMARY


async def test_a_budget_from_actual_plus_5_percent_is_edited_and_compared(server):
    async with server.client() as http:
        r = await http.post(
            "/versions?wait=10", json={"data": {"name": "budget", "from": "actual", "percent": 5}}
        )
        assert r.status_code == 200, r.text
        versions = (await http.get("/versions")).json()["data"]["versions"]
        assert [v["name"] for v in versions] == ["actual", "budget"]
        assert versions[1]["from"] == "actual" and versions[1]["percent"] == "5"

        cell = {"supplier": None, "brand": None, "family": None, "month": None, "level": 7}
        condition = '{"level": 7, "month": null}'
        actual = (await http.get(f"/view_table/{SUMMARY}", params={"condition": condition})).json()
        budget = await http.get(
            f"/view_table/{SUMMARY}", params={"condition": condition, "version": "budget"}
        )
        assert budget.json()["data"]["version"] == "budget"
        total_a = Decimal(str(actual["data"]["rows"][0]["net_amount"]))
        total_b = Decimal(str(budget.json()["data"]["rows"][0]["net_amount"]))
        assert abs(total_b - total_a * Decimal("1.05")) < Decimal("0.01") * 10_000  # per row

        supplier, brand = (
            await read(
                server,
                f"SELECT supplier, brand FROM {SUMMARY} WHERE level = 1 AND month = '2024-03' "
                "ORDER BY ALL LIMIT 1",
            )
        )[0]
        brand_month = {"supplier": supplier, "brand": brand, "month": "2024-03"}
        ann, bob = await Client.connect(server, "ann"), await Client.connect(server, "bob")
        try:
            await ann.next("snapshot")
            await bob.next("snapshot")
            await ann.send(
                {
                    "type": "edit",
                    "id": "b1",
                    "table": SUMMARY,
                    "column": "net_amount",
                    "value": 1234.5,
                    "condition": {**brand_month, "version": "budget"},
                }
            )
            applied = await ann.next("applied", id="b1")
            update = await bob.next("updates")
            assert update["seq"] == applied["seq"]
            assert {r.get("version") for r in update["rows"]} == {"budget"}
            seq = applied["seq"]
        finally:
            await ann.close()
            await bob.close()

        r = await http.get(
            "/compare",
            params={
                "a": "budget",
                "b": "actual",
                "min_seq": seq,  # read-your-writes: DuckDB holds the edit
                "condition": _json({**brand_month, "level": 1}),
            },
        )
        (row,) = r.json()["data"]["rows"]
        assert Decimal(str(row["a"])) == Decimal("1234.50")
        assert Decimal(str(row["diff"])) == Decimal(str(row["a"])) - Decimal(str(row["b"]))
        r = await http.get(
            "/compare",
            params={"a": "budget", "b": "actual", "format": "csv", "condition": _json(cell)},
        )
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 1 and rows[0]["level"] == "7"

        r = await http.post("/versions/budget/lock?wait=10", json={})
        assert r.status_code == 200, r.text
        edit = {
            "table": SUMMARY,
            "column": "net_amount",
            "value": "10.00",
            "condition": brand_month,
            "version": "budget",
        }
        r = await http.post("/update_cell?wait=10", json={"data": edit})
        assert r.status_code == 423 and r.json()["error"]["code"] == "locked"
        r = await http.post("/versions/budget/unlock?wait=10", json={})
        r = await http.post("/update_cell?wait=10", json={"data": edit})
        assert r.status_code == 200, r.text
        r = await http.post("/undo?wait=10&version=budget", json={})
        assert r.status_code == 200, r.text


async def test_bad_version_requests_are_refused_with_clear_errors(server):
    async with server.client() as http:
        r = await http.get("/compare", params={"a": "nope", "b": "actual"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
        r = await http.get("/compare", params={"b": "actual"})
        assert r.status_code == 400
        r = await http.get(f"/view_table/{SUMMARY}", params={"version": "Robert'); DROP"})
        assert r.status_code == 400
        r = await http.post("/versions?wait=10", json={"data": {"name": "actual"}})
        assert r.status_code == 400
        r = await http.post("/versions?wait=10", json={"data": {"name": "b", "from": "nope"}})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
        edit = {"table": SUMMARY, "column": "net_amount", "value": 1, "version": "ghost"}
        r = await http.post("/update_cell?wait=10", json={"data": edit})
        assert r.json()["error"]["code"] == "unknown_version"


def _json(value: dict) -> str:
    import json

    return json.dumps(value)


async def test_a_socket_saying_hello_with_a_version_gets_its_snapshot(server):
    async with server.client() as http:
        r = await http.post(
            "/versions?wait=10", json={"data": {"name": "half", "from": "actual", "percent": -50}}
        )
        assert r.status_code == 200, r.text
    actual = await Client.connect(server, "ann")
    half = await Client.connect(server, "bob", version="half")
    try:
        first, second = await actual.next("snapshot"), await half.next("snapshot")
        assert second.get("version") == "half" and "version" not in first

        def total(snapshot: dict) -> Decimal:
            (row,) = [r for r in snapshot["rows"] if r["level"] == 7 and r["month"] is None]
            return Decimal(str(row["net_amount"]))

        assert abs(total(second) * 2 - total(first)) < total(first) / 1000
    finally:
        await actual.close()
        await half.close()


async def test_holds_history_reports_and_exports_read_the_named_version(server):
    async with server.client() as http:
        r = await http.post("/versions?wait=10", json={"data": {"name": "plan", "percent": 10}})
        assert r.status_code == 200, r.text
        (cell,) = await read(
            server,
            f"SELECT supplier, brand FROM {SUMMARY} WHERE level = 1 ORDER BY ALL LIMIT 1",
        )
        condition = {"supplier": cell[0], "brand": cell[1], "month": None, "version": "plan"}
        r = await http.post("/holds?wait=10", json={"data": {"condition": condition, "on": True}})
        assert r.status_code == 200, r.text
        seq = r.json()["data"]["seq"]
        plan = (await http.get("/holds", params={"version": "plan", "min_seq": seq})).json()
        actual = (await http.get("/holds", params={"min_seq": seq})).json()
        assert len(plan["data"]["holds"]) == 1 and actual["data"]["holds"] == []
        key = _json({"supplier": cell[0], "brand": cell[1], "month": None})
        params = {"table": SUMMARY, "condition": key, "min_seq": seq}
        plan_events = (await http.get("/history", params={**params, "version": "plan"})).json()
        actual_events = (await http.get("/history", params=params)).json()
        assert [e["action"] for e in plan_events["data"]["events"]] == ["hold"]
        assert actual_events["data"]["events"] == []

        def total(report: dict) -> Decimal:
            return sum(Decimal(str(row["net_amount"])) for row in report["data"]["rows"])

        name = "monthly-sales-summary"
        a = (await http.get(f"/reports/{name}")).json()
        b = (await http.get(f"/reports/{name}", params={"version": "plan"})).json()
        assert total(b) > total(a) * Decimal("1.09")
        r = await http.get("/export/sales", params={"format": "csv", "version": "plan"})
        first = r.text.splitlines()[1].split(",")
        (row,) = await read(server, "SELECT net_price FROM sales WHERE sale_id = ?", int(first[0]))
        assert Decimal(first[-1]) == (row[0] * Decimal("1.1")).quantize(Decimal("0.01"))
        r = await http.get("/grid/export", params={"version": "plan"})
        assert r.status_code == 200


async def test_open_sockets_learn_of_a_created_and_a_locked_version(server):
    viewer = await Client.connect(server, "viewer")
    try:
        await viewer.next("snapshot")
        async with server.client() as http:
            r = await http.post("/versions?wait=10", json={"data": {"name": "fc", "percent": 2}})
            assert r.status_code == 200, r.text
            created = await viewer.next("updates")
            assert [(v["name"], v["locked"]) for v in created["versions"]] == [
                ("actual", False),
                ("fc", False),
            ]
            assert created["seq"] == r.json()["data"]["seq"]
            r = await http.post("/versions/fc/lock?wait=10", json={})
            assert r.status_code == 200, r.text
            locked = await viewer.next("updates")
            assert [(v["name"], v["locked"]) for v in locked["versions"]][1] == ("fc", True)
    finally:
        await viewer.close()


async def test_the_variance_report_agrees_with_compare(server):
    async with server.client() as http:
        r = await http.post("/versions?wait=10", json={"data": {"name": "up", "percent": 10}})
        assert r.status_code == 200, r.text
        seq = r.json()["data"]["seq"]
        name = "variance-to-actual"
        params = {"version": "up", "min_seq": seq}
        report = (await http.get(f"/reports/{name}", params=params)).json()
        rows = report["data"]["rows"]
        grand = rows[-1]
        assert grand["supplier"] is None and grand["quarter"] is None
        total = {"level": 7, "month": None}
        r = await http.get("/compare", params={"a": "up", "b": "actual", "condition": _json(total)})
        (cell,) = r.json()["data"]["rows"]
        assert Decimal(str(grand["variance_amount"])) == Decimal(str(cell["diff"]))
        assert Decimal(str(grand["version_amount"])) == Decimal(str(cell["a"]))
        assert abs(grand["share_variance"] - 0.10) < 0.001
        suppliers = [r for r in rows if r["supplier"] is not None and r["quarter"] is None]
        assert sum(Decimal(str(r["variance_amount"])) for r in suppliers) == Decimal(
            str(grand["variance_amount"])
        )
        itself = (await http.get(f"/reports/{name}")).json()["data"]["rows"]
        assert {Decimal(str(r["variance_amount"])) for r in itself} == {Decimal(0)}
