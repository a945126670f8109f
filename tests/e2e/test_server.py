"""A real server on port 0 with real Redis and DuckDB: WebSocket and REST end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal

import duckdb
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from conftest import run_server
from helpers import TIMEOUT, Client, all_persisted, db_read, read, some_sales

from protocol.catalog import SUMMARY
from server.analytics.check import footing_errors, summary_drift
from server.config import Settings
from server.data_role import WRITER_SWITCH_INTERVAL
from server.store.streams import RESPONSES


async def test_edit_over_websocket_reaches_duckdb_stream_and_other_clients(server, redis_url):
    ann = await Client.connect(server, "ann")
    bob = await Client.connect(server, "bob")
    welcome = await ann.next("welcome")
    assert welcome["user"] == "ann"
    snapshot = await ann.next("snapshot")
    assert any(row["level"] == 7 and row["month"] is None for row in snapshot["rows"])
    await bob.next("snapshot")
    (sale_id,) = await some_sales(server, 1)

    await ann.edit("e1", table="sales", column="quantity", value=77, condition={"sale_id": sale_id})
    queued = await ann.next("queued", id="e1")
    applied = await ann.next("applied", id="e1")
    assert applied["request"] == queued["request"]

    update = await bob.next("updates")
    assert update["seq"] == applied["seq"]
    assert update["by"] == ["ann"]
    assert {"table": "sales", "sale_id": sale_id, "quantity": 77} | update["base"][0] == update[
        "base"
    ][0]
    assert {row["level"] for row in update["rows"]} == {0, 1, 3, 7}

    assert await read(server, "SELECT quantity FROM sales WHERE sale_id = ?", sale_id) == [(77,)]
    r = aioredis.from_url(redis_url)
    entries = await r.xrange(RESPONSES)
    await r.aclose()
    assert entries[-1][0].decode() == applied["seq"]
    payload = orjson.loads(entries[-1][1][b"p"])
    assert payload["results"][0]["request"] == queued["request"]
    await ann.close()
    await bob.close()


async def test_many_users_at_once_all_applied_in_stream_order(server):
    users = [await Client.connect(server, f"user{i}") for i in range(8)]
    for user in users:
        await user.next("snapshot")
    sale_ids = await some_sales(server, 40)
    product_ids = [r[0] for r in await read(server, "SELECT product_id FROM product LIMIT 8")]

    async def burst(index: int, user: Client) -> list[str]:
        ids = []
        for n in range(5):
            sale = sale_ids[index * 5 + n]
            await user.edit(
                f"q{n}",
                table="sales",
                column="quantity",
                value=index * 10 + n + 1,
                condition={"sale_id": sale},
            )
            ids.append(f"q{n}")
        await user.edit(
            "p",
            table="product",
            column="product_name",
            value=f"renamed by {index}",
            condition={"product_id": product_ids[index]},
        )
        ids.append("p")
        return ids

    sent = await asyncio.gather(*(burst(i, u) for i, u in enumerate(users)))
    requests: list[str] = []
    for user, ids in zip(users, sent, strict=True):
        for client_id in ids:
            applied = await user.next("applied", id=client_id)
            requests.append(applied["request"])
    assert len(set(requests)) == 48  # none lost, none doubled

    log = await read(server, "SELECT request_id, status FROM request_log")
    assert sorted(r for r, _ in log) == sorted(requests)
    assert {s for _, s in log} == {"applied"}
    for index in range(8):
        values = await read(
            server,
            "SELECT quantity FROM sales WHERE sale_id IN (SELECT unnest(?)) ORDER BY sale_id",
            sale_ids[index * 5 : index * 5 + 5],
        )
        assert [v for (v,) in values] == [index * 10 + n + 1 for n in range(5)]
    names = await read(
        server,
        "SELECT product_name FROM product WHERE product_id IN (SELECT unnest(?))",
        product_ids,
    )
    assert sorted(n for (n,) in names) == sorted(f"renamed by {i}" for i in range(8))
    assert await db_read(server, summary_drift) == []
    for user in users:
        await user.close()


async def test_same_cell_concurrent_edits_later_wins_everywhere(server):
    ann = await Client.connect(server, "ann")
    bob = await Client.connect(server, "bob")
    await ann.next("snapshot")
    await bob.next("snapshot")
    cell = (await read(server, f"SELECT supplier, brand FROM {SUMMARY} WHERE level = 1 LIMIT 1"))[0]
    condition = {"supplier": cell[0], "brand": cell[1], "family": None, "month": "2024-06"}
    edit = {"table": SUMMARY, "column": "net_amount", "condition": condition}
    await asyncio.gather(ann.edit("a", value=1111, **edit), bob.edit("b", value=2222, **edit))
    applied = {"ann": await ann.next("applied", id="a"), "bob": await bob.next("applied", id="b")}
    later = max(applied, key=lambda who: tuple(map(int, applied[who]["request"].split("-"))))
    expected = {"ann": 1111, "bob": 2222}[later]

    for client in (ann, bob):
        seen = None
        last_seq = max(a["seq"] for a in applied.values())
        while True:
            update = await client.next("updates")
            for row in update["rows"]:
                if row["brand"] == cell[1] and row["level"] == 1 and row["month"] == "2024-06":
                    seen = row["net_amount"]
            if update["seq"] == last_seq:
                break
        assert Decimal(str(seen)) == expected
    stored = await read(
        server,
        f"SELECT net_amount FROM {SUMMARY} WHERE supplier = ? AND brand = ? AND family IS NULL "
        "AND month = '2024-06'",
        cell[0],
        cell[1],
    )
    assert stored == [(Decimal(expected).quantize(Decimal("0.01")),)]
    await ann.close()
    await bob.close()


async def test_brand_edit_rebalances_families_for_every_viewer(server):
    ann = await Client.connect(server, "ann")
    viewer = await Client.connect(server, "viewer")
    await ann.next("snapshot")
    snapshot = await viewer.next("snapshot")
    brand_row = next(r for r in snapshot["rows"] if r["level"] == 1 and r["month"] == "2025-01")
    families = {
        r["family"]: Decimal(str(r["net_amount"]))
        for r in snapshot["rows"]
        if r["level"] == 0 and r["brand"] == brand_row["brand"] and r["month"] == "2025-01"
    }
    condition = {"supplier": brand_row["supplier"], "brand": brand_row["brand"], "month": "2025-01"}
    new_total = Decimal(str(brand_row["net_amount"])) * 2
    await ann.edit(
        "x", table=SUMMARY, column="net_amount", value=str(new_total), condition=condition
    )
    await ann.next("applied", id="x")
    update = await viewer.next("updates")
    changed = {
        r["family"]: Decimal(str(r["net_amount"]))
        for r in update["rows"]
        if r["level"] == 0 and r["brand"] == brand_row["brand"] and r["month"] == "2025-01"
    }
    assert sum(changed.values()) == new_total
    # doubling is exact: every sales row doubles, so every family does, to the cent
    assert changed == {family: old * 2 for family, old in families.items()}
    assert await db_read(server, footing_errors) == []
    await ann.close()
    await viewer.close()


async def test_bad_edits_are_rejected_at_the_edge_and_never_queued(server, redis_url):
    ann = await Client.connect(server, "ann")
    await ann.next("snapshot")
    cases = {
        "t": (
            {"table": "nope", "column": "quantity", "value": 1, "condition": {"sale_id": 1}},
            "unknown_table",
        ),
        "c": (
            {"table": "sales", "column": "nope", "value": 1, "condition": {"sale_id": 1}},
            "unknown_column",
        ),
        "k": (
            {"table": "sales", "column": "sale_id", "value": 1, "condition": {"sale_id": 1}},
            "not_editable",
        ),
        "v": (
            {"table": "sales", "column": "quantity", "value": "ten", "condition": {"sale_id": 1}},
            "invalid_value",
        ),
        "n": ({"table": "sales", "column": "quantity", "value": 1}, "condition_required"),
        "s": (
            {"table": SUMMARY, "column": "net_amount", "value": 1, "condition": {"brand": "x"}},
            "not_a_cell",
        ),
    }
    for client_id, (edit, _) in cases.items():
        await ann.edit(client_id, **edit)
    for client_id, (_, code) in cases.items():
        rejected = await ann.next("rejected", id=client_id)
        assert rejected["error"]["code"] == code
        assert rejected["request"] is None
    await ann.send({"type": "bogus"})
    assert (await ann.next("error"))["code"] == "unknown_type"
    r = aioredis.from_url(redis_url)
    assert await r.xlen("request_duck") == 0
    await r.aclose()
    # a row that does not exist is decided by the writer: rejected, nothing changed
    await ann.edit("r", table="sales", column="quantity", value=1, condition={"sale_id": -1})
    assert (await ann.next("rejected", id="r"))["error"]["code"] == "no_rows"
    await ann.close()


async def test_hello_is_required_first(server):
    ws = await websockets.connect(server.ws_url)
    await ws.send(json.dumps({"type": "ping"}))
    frame = orjson.loads(await ws.recv())
    assert frame == {"type": "error", "code": "hello_required", "message": frame["message"]}
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == 1008


async def test_resume_with_since_replays_missed_updates_in_order(server, redis_url):
    ann = await Client.connect(server, "ann")
    snapshot = await ann.next("snapshot")
    await ann.close()
    editor = await Client.connect(server, "editor")
    await editor.next("snapshot")
    sale_ids = await some_sales(server, 3)
    for n, sale_id in enumerate(sale_ids):
        await editor.edit(
            f"e{n}", table="sales", column="quantity", value=500 + n, condition={"sale_id": sale_id}
        )
        await editor.next("applied", id=f"e{n}")
    back = await Client.connect(server, "ann", since=snapshot["seq"])
    await back.next("welcome")
    seen = [(await back.next("updates"))["base"][0]["quantity"] for _ in sale_ids]
    assert seen == [500, 501, 502]
    assert not any(f["type"] == "snapshot" for f in back.frames)
    await all_persisted(server)  # retention always covers what DuckDB does not hold yet
    r = aioredis.from_url(redis_url)
    await r.xtrim(RESPONSES, maxlen=1)  # the missed entries are gone: replay is impossible
    await r.aclose()
    stale = await Client.connect(server, "ann", since=snapshot["seq"])
    await stale.next("resync")
    assert (await stale.next("snapshot"))["seq"] == server.services.writer.last_applied
    future = await Client.connect(server, "ann", since="99999999999999-0")
    await future.next("resync")
    for client in (editor, back, stale, future):
        await client.close()


async def test_rest_update_view_and_updates(server):
    async with server.client() as http:
        (sale_id,) = await some_sales(server, 1)
        edit = {
            "table": "sales",
            "column": "net_price",
            "value": 42.5,
            "condition": {"sale_id": sale_id},
        }
        queued = await http.post("/update_cell", json={"data": edit})
        assert queued.status_code == 202
        request_id = queued.json()["data"]["request_id"]
        for _ in range(100):
            status = (await http.get(f"/requests/{request_id}")).json()["data"]
            if status["status"] != "queued":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "applied"

        waited = await http.post("/update_cell?wait=5", json={"data": {**edit, "value": "43.10"}})
        assert waited.status_code == 200
        assert waited.json()["data"]["status"] == "applied"

        view = (
            await http.get(
                "/view_table/sales", params={"condition": json.dumps({"sale_id": sale_id})}
            )
        ).json()
        assert view["data"]["rows"] == [view["data"]["rows"][0] | {"net_price": 43.1}]
        assert view["data"]["total"] == 1
        assert view["data"]["seq"] == waited.json()["data"]["seq"]

        page = (
            await http.get(
                f"/view_table/{SUMMARY}", params={"limit": 5, "offset": 5, "order": "-net_amount"}
            )
        ).json()
        amounts = [row["net_amount"] for row in page["data"]["rows"]]
        assert amounts == sorted(amounts, reverse=True) and len(amounts) == 5

        updates = (await http.get("/get_updates", params={"since": status["seq"]})).json()["data"]
        assert updates["last_seq"] == waited.json()["data"]["seq"]
        assert any(u["table"] == "sales" and u["net_price"] == 43.1 for u in updates["updates"])
        latest = (await http.get("/get_updates", params={"limit": 1})).json()["data"]
        assert latest["last_seq"] == updates["last_seq"]

        missing = await http.post(
            "/update_cell?wait=5", json={"data": {**edit, "condition": {"sale_id": -4}}}
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "no_rows"
        for body, status_code, code in [
            ({"data": {**edit, "table": "nope"}}, 404, "unknown_table"),
            ({"data": {**edit, "column": "nope"}}, 422, "unknown_column"),
            ({"data": {**edit, "value": "NaN"}}, 422, "invalid_value"),
            ({"nodata": 1}, 400, "bad_message"),
        ]:
            response = await http.post("/update_cell", json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status_code, code)
        nope = await http.post(
            "/update_cell", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert nope.json()["error"]["code"] == "bad_json"
        assert (await http.get("/view_table/nope")).status_code == 404
        assert (await http.get("/requests/1-1")).status_code == 404
        health = (await http.get("/healthz")).json()
        assert (
            health["status"] == "ok"
            and health["last_applied"] == missing.json()["data"]["request_id"]
        )
        index = await http.get("/")
        assert index.status_code == 200 and "ducksheet" in index.text


async def test_a_burst_of_resuming_sockets_waits_for_redis_connections(data_dir, redis_url):
    # far more sockets resume at once than the pool holds connections: each waits for one
    settings = Settings(data_dir=data_dir, redis_url=redis_url, port=0, redis_connections=3)
    async with run_server(settings) as server:
        editor = await Client.connect(server, "editor")
        await editor.next("snapshot")
        since = server.services.writer.last_applied or "0-0"
        sale_id = (await some_sales(server, 1))[0]
        await editor.edit(
            "e", table="sales", column="quantity", value=77, condition={"sale_id": sale_id}
        )
        await editor.next("applied", id="e")
        clients = await asyncio.gather(
            *(Client.connect(server, f"viewer-{n}", since=since) for n in range(40))
        )
        for client in clients:
            await client.next("welcome")
            assert (await client.next("updates"))["base"][0]["quantity"] == 77
        for client in [editor, *clients]:
            await client.close()


async def test_duckdb_runs_the_threads_the_setting_names(data_dir, redis_url):
    """DuckDB's own default (one per core) unless DUCKSHEET_DUCKDB_THREADS names more
    or fewer."""
    with duckdb.connect() as fresh:
        (per_core,) = fresh.execute("SELECT current_setting('threads')").fetchone()
    for threads, expected in ((Settings.duckdb_threads, per_core), (1, 1), (3, 3)):
        settings = Settings(data_dir=data_dir, redis_url=redis_url, duckdb_threads=threads)
        async with run_server(settings) as server:
            assert await read(server, "SELECT current_setting('threads')") == [(expected,)]


async def test_a_data_process_hands_the_gil_to_its_writer_within_half_a_millisecond(
    data_dir, redis_url
):
    """The persister's thread runs Python between its DuckDB calls; the writer's event
    loop must not wait the default 5 ms for the GIL."""
    sys.setswitchinterval(0.005)
    async with run_server(Settings(data_dir=data_dir, redis_url=redis_url, port=0)):
        assert sys.getswitchinterval() == pytest.approx(WRITER_SWITCH_INTERVAL)
