"""Issue #16: hostile input gets a clear 4xx, numbers stay exact, and browsers cannot
be turned against the server. Every test runs a real server (port 0, real Redis, real
DuckDB)."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import redis as redis_sync
import websockets
from conftest import RunningServer, run_server
from helpers import TIMEOUT, Client, read, some_sales

from protocol.catalog import SUMMARY
from protocol.errors import HTTP_STATUS
from server.config import Settings
from server.store.streams import DEAD_LETTERS, REQUESTS, RESPONSES

JSON = {"content-type": "application/json"}
MAX_ID = "18446744073709551615-18446744073709551615"
SQL_WORDS = ("SELECT", "CAST", "INTEGER", "DECIMAL(", "Conversion Error", "Binder", "Parser")


def exact(text: str | bytes) -> Any:
    """JSON with its numbers read exactly (as a client that cares about cents does)."""
    return json.loads(text, parse_float=Decimal)


def assert_no_sql(text: str) -> None:
    for word in SQL_WORDS:
        assert word not in text, text


async def fingerprint(server: RunningServer) -> tuple[Any, ...]:
    rows = await read(
        server,
        "SELECT (SELECT sum(hash(sale_id, invoice_date, product_id, customer_id, quantity, "
        "net_price)) FROM sales), (SELECT sum(hash(supplier, brand, family, month, quantity, "
        f"net_amount, line_count)) FROM {SUMMARY}), (SELECT sum(hash(product_name, brand)) "
        "FROM product), (SELECT count(*) FROM holds)",
    )
    return rows[0]


def request_count(redis_url: str) -> int:
    with redis_sync.Redis.from_url(redis_url) as r:
        return r.xlen(REQUESTS)


async def ws_answers(server: RunningServer, frames: list[str]) -> list[dict[str, Any]]:
    """Send raw text frames after hello; the answer (rejected/error) to each, then check
    the socket still answers a ping."""
    client = await Client.connect(server, "mallory")
    await client.next("welcome")
    for frame in frames:
        await client.ws.send(frame)
    answers: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while len(answers) < len(frames):
            frame = orjson.loads(await client.ws.recv())
            if frame["type"] in ("rejected", "error"):
                answers.append(frame)
    await client.send({"type": "ping"})
    await client.next("pong")
    await client.close()
    return answers


def code_of(frame: dict[str, Any]) -> str:
    return frame["error"]["code"] if frame["type"] == "rejected" else frame["code"]


# ---- 1. numbers beyond the decimal context --------------------------------------------

HUGE_EDITS = [
    '{"table":"sales","column":"net_price","value":1e308,"condition":{"sale_id":1}}',
    '{"table":"sales","column":"net_price","value":-1e308,"condition":{"sale_id":1}}',
    '{"table":"sales","column":"net_price","value":"123456789012345678901234567890.5",'
    '"condition":{"sale_id":1}}',
    '{"table":"sales","column":"net_price","value":1,"expect":1e308,"condition":{"sale_id":1}}',
    '{"table":"sales","column":"quantity","value":123456789012345678901234567890,'
    '"condition":{"sale_id":1}}',
    '{"table":"sales","column":"quantity","value":1,'
    '"condition":{"sale_id":123456789012345678901234567890}}',
    '{"table":"sales","column":"quantity","value":1,"condition":{"net_price":1e30}}',
    '{"table":"sales","column":"quantity","value":1,'
    '"condition":"net_price = 123456789012345678901234567890.25"}',
    '{"table":"sales","column":"quantity","value":1,'
    '"condition":"sale_id = 123456789012345678901234567890"}',
    '{"table":"sales","column":"quantity","value":1,"condition":{"sale_id":1e-400}}',
    '{"table":"product","column":"unit_price","value":10000000000,"condition":{"product_id":1}}',
    '{"table":"sales","column":"quantity","value":1,"condition":{"product_id":3000000000}}',
    '{"table":"sales_summary_by_product_family","column":"net_amount","value":1e308}',
]


async def test_huge_numbers_are_refused_over_rest_and_websocket(server, redis_url):
    before = await fingerprint(server)
    async with server.client() as http:
        for edit in HUGE_EDITS:
            response = await http.post(
                "/update_cell", content=f'{{"data":{edit}}}'.encode(), headers=JSON
            )
            assert response.status_code == 422, (edit, response.text)
            assert response.json()["error"]["code"] in ("invalid_value", "bad_condition")
        for condition in (
            '{"net_price":1e308}',
            '{"sale_id":123456789012345678901234567890}',
            '"net_price > 123456789012345678901234567890.5"',
            '{"product_id":3000000000}',
        ):
            response = await http.get("/view_table/sales", params={"condition": condition})
            assert response.status_code == 422, (condition, response.text)
    frames = [f'{{"type":"edit","id":"h{i}",{e[1:]}' for i, e in enumerate(HUGE_EDITS)]
    answers = await ws_answers(server, frames)
    assert [a["type"] for a in answers] == ["rejected"] * len(frames)
    assert {code_of(a) for a in answers} <= {"invalid_value", "bad_condition"}
    assert all(a["request"] is None for a in answers)  # refused at the edge
    assert await fingerprint(server) == before
    assert request_count(redis_url) == 0


# ---- 2. non-ASCII digits and out-of-range ids ------------------------------------------

BAD_SEQS = [
    "\u00b2",
    "\u0661-0",
    "1-\u00b2",
    "18446744073709551616-0",
    "1-18446744073709551616",
    "-1",
    "1-",
]


async def test_ids_and_numbers_take_ascii_digits_in_range_only(server):
    async with server.client() as http:
        for seq in BAD_SEQS:
            for path in ("/get_updates", f"/requests/{seq}"):
                params = {"since": seq} if path == "/get_updates" else None
                response = await http.get(path, params=params)
                assert response.status_code == 400, (path, seq, response.text)
                assert response.json()["error"]["code"] == "bad_message"
        assert (await http.get(f"/requests/{MAX_ID}")).status_code == 404
        newest = await http.get("/get_updates", params={"since": MAX_ID})
        assert newest.status_code == 200 and newest.json()["data"]["resync"] is True
        for name, value in [
            ("limit", "\u0661\u0660"),
            ("limit", "1_0"),
            ("limit", " 5"),
            ("limit", "99999999999999999999999"),
            ("offset", "\u0663"),
        ]:
            response = await http.get("/view_table/sales", params={name: value})
            assert response.status_code == 400, (name, value)
        for wait in ("nan", "-5", "inf", "1e1", "\u0663", "31", "0x1"):
            response = await http.post(
                f"/update_cell?wait={wait}",
                json={"data": {"table": "sales", "column": "quantity", "value": 1}},
            )
            assert response.status_code == 400, (wait, response.text)
            assert "'wait'" in response.json()["error"]["message"]
        for bad in ("\u00b2", "1e3", "\u0661\u0662"):
            response = await http.get("/reports/top-5-by-revenue", params={"limit": bad})
            assert response.status_code == 422, bad
    for seq in BAD_SEQS:
        ws = await websockets.connect(server.ws_url)
        await ws.send(json.dumps({"type": "hello", "name": "x", "since": seq}))
        frame = orjson.loads(await ws.recv())
        assert frame["type"] == "error" and frame["code"] == "bad_message"
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                await ws.recv()
        assert ws.close_code == 1008
    # the largest id there can be is well formed, and nothing follows it: resync
    client = await Client.connect(server, "max", since=MAX_ID)
    await client.next("resync")
    assert (await client.next("snapshot"))["rows"]
    await client.close()


# ---- 3. money stays exact on the way in and out ----------------------------------------


async def test_money_is_exact_in_and_out(server):
    amount = "99999999999999.99"
    sale_id = (await some_sales(server, 1))[0]
    watcher = await Client.connect(server, "watcher")
    welcome_seq = (await watcher.next("welcome"))["seq"]
    await watcher.next("snapshot")
    async with server.client() as http:
        body = (
            f'{{"data":{{"table":"sales","column":"net_price","value":{amount},'
            f'"condition":{{"sale_id":{sale_id}}}}}}}'
        )
        response = await http.post("/update_cell?wait=10", content=body, headers=JSON)
        assert response.json()["data"]["status"] == "applied", response.text
        stored = await read(server, "SELECT net_price FROM sales WHERE sale_id = ?", sale_id)
        assert stored == [(Decimal(amount),)]
        view = await http.get("/view_table/sales", params={"condition": f'{{"sale_id":{sale_id}}}'})
        assert f'"net_price":{amount}' in view.text
        assert exact(view.text)["data"]["rows"][0]["net_price"] == Decimal(amount)
        updates = exact((await http.get("/get_updates", params={"since": welcome_seq})).text)
        sales_rows = [u for u in updates["data"]["updates"] if u["table"] == "sales"]
        assert sales_rows[0]["net_price"] == Decimal(amount)
        total = await read(
            server, f"SELECT net_amount FROM {SUMMARY} WHERE level = 7 AND month IS NULL"
        )
        summary_rows = exact(
            (
                await http.get(
                    f"/view_table/{SUMMARY}", params={"condition": '{"level":7,"month":null}'}
                )
            ).text
        )["data"]["rows"]
        assert summary_rows[0]["net_amount"] == total[0][0]
        # a whole amount goes out with its cents, as DuckDB holds it
        assert str(summary_rows[0]["net_amount"]) == str(total[0][0])
    frame = None
    async with asyncio.timeout(TIMEOUT):
        while frame is None:
            candidate = exact(await watcher.ws.recv())
            if candidate["type"] == "updates" and candidate["base"]:
                frame = candidate
    assert frame["base"][0]["net_price"] == Decimal(amount)
    grand = [r for r in frame["rows"] if r["level"] == 7 and r["month"] is None]
    assert grand[0]["net_amount"] == total[0][0]
    await watcher.close()
    snapshot_client = await websockets.connect(server.ws_url, max_size=None)
    await snapshot_client.send(json.dumps({"type": "hello", "name": "s"}))
    snapshot = None
    while snapshot is None:
        candidate = exact(await snapshot_client.recv())
        snapshot = candidate if candidate["type"] == "snapshot" else None
    grand = [r for r in snapshot["rows"] if r["level"] == 7 and r["month"] is None]
    assert grand[0]["net_amount"] == total[0][0]
    await snapshot_client.close()


# ---- 4. in-range values that would overflow what the write produces ------------------


async def a_family_month(server: RunningServer) -> dict[str, Any]:
    rows = await read(
        server,
        f"SELECT supplier, brand, family, month FROM {SUMMARY} WHERE level = 0 "
        "AND month IS NOT NULL ORDER BY line_count, supplier, brand, family, month LIMIT 1",
    )
    return dict(zip(("supplier", "brand", "family", "month"), rows[0], strict=True))


async def test_writes_that_would_overflow_storage_are_422(server, redis_url, caplog):
    caplog.set_level(logging.INFO)
    cell = await a_family_month(server)
    before = await fingerprint(server)
    quantity = {"table": SUMMARY, "column": "quantity", "value": 10**12, "condition": cell}
    async with server.client() as http:
        response = await http.post("/update_cell?wait=10", json={"data": quantity})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_value"
        assert_no_sql(response.text)
        # the generic path: one UPDATE of many rows, the summary settled at the end
        huge = {
            "table": "sales",
            "column": "net_price",
            "value": "99999999999999.99",
            "condition": {"quantity": 5},
        }
        response = await http.post("/update_cell?wait=10", json={"data": huge})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_value"
        assert_no_sql(response.text)
        status = (await http.get(f"/requests/{response.json()['data']['request_id']}")).json()
        assert status["data"]["error"]["code"] == "invalid_value"
    assert await fingerprint(server) == before
    # point edits, settled in Python: eleven lines at the top of the range pass 10**15
    sales = await some_sales(server, 12)
    client = await Client.connect(server, "big")
    await client.next("welcome")
    for index, sale_id in enumerate(sales):
        await client.edit(
            f"p{index}",
            table="sales",
            column="net_price",
            value="99999999999999.99",
            condition={"sale_id": sale_id},
        )
    frames: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(TIMEOUT):
        while len(frames) < len(sales):
            frame = orjson.loads(await client.ws.recv())
            if frame["type"] in ("applied", "rejected"):
                frames[frame["id"]] = frame
    kinds = [frames[f"p{i}"]["type"] for i in range(len(sales))]
    assert kinds.count("applied") == 9 and kinds[9:] == ["rejected"] * 3, kinds
    assert {frames[f"p{i}"]["error"]["code"] for i in range(9, 12)} == {"invalid_value"}
    # a quantity spread over more units than a sales row holds, over the WebSocket
    await client.edit("q", **quantity)
    rejected = await client.next("rejected", id="q")
    assert rejected["error"]["code"] == "invalid_value"
    assert_no_sql(json.dumps(rejected))
    await client.close()
    with redis_sync.Redis.from_url(redis_url) as r:
        assert r.xlen(DEAD_LETTERS) == 0
    assert not [rec for rec in caplog.records if rec.exc_info]
    for record in caplog.records:
        assert_no_sql(record.getMessage())


async def test_negative_quantities_are_refused_as_by_imports(server):
    sale_id = (await some_sales(server, 1))[0]
    edit = {"table": "sales", "column": "quantity", "value": -1, "condition": {"sale_id": sale_id}}
    async with server.client() as http:
        response = await http.post("/update_cell", json={"data": edit})
        assert response.status_code == 422 and "at least 0" in response.json()["error"]["message"]
        cell = await a_family_month(server)
        summary = {"table": SUMMARY, "column": "quantity", "value": -5, "condition": cell}
        assert (await http.post("/update_cell", json={"data": summary})).status_code == 422
        # comparing with a negative number is still fine
        view = await http.get("/view_table/sales", params={"condition": "quantity > -1"})
        assert view.status_code == 200
    answers = await ws_answers(server, [json.dumps({"type": "edit", "id": "n", **edit})])
    assert code_of(answers[0]) == "invalid_value"


# ---- 5. the connection cap counts from accept ------------------------------------------


async def test_connection_cap_counts_sockets_from_accept(data_dir, redis_url):
    settings = Settings(data_dir=data_dir, redis_url=redis_url, max_connections=5)
    async with run_server(settings) as server:
        sockets = await asyncio.gather(
            *(websockets.connect(server.ws_url) for _ in range(20)), return_exceptions=True
        )
        opened = [ws for ws in sockets if not isinstance(ws, BaseException)]
        for ws in opened:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "hello", "name": "crowd"}))
                await ws.send(json.dumps({"type": "ping"}))
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        frame = orjson.loads(await ws.recv())
                        if frame["type"] == "pong":
                            break
                raise websockets.ConnectionClosedOK(None, None)  # welcomed: counted below
        welcomed = [ws for ws in opened if ws.close_code is None]
        refused = [ws for ws in opened if ws.close_code == 1013]
        assert len(welcomed) <= 5 and len(welcomed) + len(refused) == len(opened)
        assert len(refused) >= 15 - (20 - len(opened))
        for ws in welcomed:
            await ws.close()


# ---- 6, 7. browsers: cross-site requests and DNS rebinding -----------------------------


async def test_cross_site_posts_are_refused(server, redis_url):
    sale_id = (await some_sales(server, 1))[0]
    body = json.dumps(
        {
            "data": {
                "table": "sales",
                "column": "quantity",
                "value": 3,
                "condition": {"sale_id": sale_id},
            }
        }
    )
    port = server.base.rsplit(":", 1)[1]
    before = await fingerprint(server)
    csv = b"customer_id,customer_name,email,region,segment\n1,Mallory,m@x.example,North,SMB\n"
    async with server.client() as http:
        refused = [
            await http.post("/update_cell", content=body, headers={"content-type": "text/plain"}),
            await http.post("/update_cell", content=body),  # no content type at all
            await http.post(
                "/update_cell",
                content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            await http.post(
                "/update_cell",
                content=body,
                headers={**JSON, "origin": "http://evil.example"},
            ),
            await http.post(
                "/update_cell",
                content=body,
                headers={**JSON, "origin": f"http://evil.example:{port}"},
            ),
            await http.post("/update_cell", content=body, headers={**JSON, "origin": "null"}),
            await http.post("/holds", content=body, headers={"content-type": "text/plain"}),
            await http.post(
                "/import/customer?upsert=true", content=csv, headers={"content-type": "text/plain"}
            ),
            await http.post(
                "/import/customer?upsert=true",
                content=csv,
                headers={"content-type": "text/csv", "origin": "http://evil.example"},
            ),
            await http.post(
                "/update_cell",
                content=body,
                headers={
                    **JSON,
                    "host": f"evil.example:{port}",
                    "origin": f"http://evil.example:{port}",
                },
            ),
        ]
        for response in refused:
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
        assert await fingerprint(server) == before
        assert request_count(redis_url) == 0
        for origin in (
            f"http://127.0.0.1:{port}",
            f"http://localhost:{port}",
            f"http://[::1]:{port}",
        ):
            ok = await http.post("/update_cell", content=body, headers={**JSON, "origin": origin})
            assert ok.status_code == 202, (origin, ok.text)
        charset = {"content-type": "application/json; charset=utf-8"}
        assert (await http.post("/update_cell", content=body, headers=charset)).status_code == 202
        # reads are not state-changing: a foreign origin's GET is answered (CORS keeps
        # the page from reading it)
        assert (
            await http.get("/healthz", headers={"origin": "http://evil.example"})
        ).status_code in (200, 503)


async def test_dns_rebinding_is_refused_at_the_websocket_handshake(server):
    port = int(server.base.rsplit(":", 1)[1])
    for host in ("evil.example", "127.0.0.1.evil.example"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"ws://{host}:{port}/ws",
                host="127.0.0.1",
                port=port,
                origin=f"http://{host}:{port}",
            )
        assert refused.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"):
        ws = await websockets.connect(server.ws_url, origin=origin)
        await ws.send(json.dumps({"type": "hello", "name": "own"}))
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.close()
    with pytest.raises(websockets.InvalidStatus):  # another port of the same host
        await websockets.connect(server.ws_url, origin=f"http://127.0.0.1:{port + 1}")


async def test_configured_origins_are_allowed(data_dir, redis_url):
    settings = Settings(
        data_dir=data_dir, redis_url=redis_url, allowed_origins="https://grid.example.com/"
    )
    async with run_server(settings) as server:
        ws = await websockets.connect(server.ws_url, origin="https://grid.example.com")
        await ws.send(json.dumps({"type": "hello", "name": "proxy"}))
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.close()
        async with server.client() as http:
            response = await http.post(
                "/update_cell",
                json={"data": {"table": "sales", "column": "quantity", "value": 1}},
                headers={"origin": "https://grid.example.com"},
            )
            assert response.status_code == 422  # past the guard: no condition


# ---- 8. resume after more than one page of entries --------------------------------------


async def test_resume_replays_every_missed_entry_past_a_page(server, redis_url):
    count = 10_601
    ids = [f"{10**12}-{n}" for n in range(1, count + 1)]
    with redis_sync.Redis.from_url(redis_url) as r:
        pipe = r.pipeline(transaction=False)
        prev = "0-0"
        for n, seq in enumerate(ids):
            row = {
                "supplier": None,
                "brand": None,
                "family": None,
                "month": None,
                "level": 7,
                "quantity": n,
                "net_amount": Decimal(n) / 100,
                "table": SUMMARY,
            }
            payload = {"seq": seq, "prev": prev, "rows": [row], "base": [], "holds": []}
            pipe.xadd(
                RESPONSES,
                {b"p": orjson.dumps(payload | {"by": ["t"], "results": []}, default=str)},
                id=seq,
            )
            prev = seq
        pipe.execute()
    client = await Client.connect(server, "late", since=ids[0])
    welcome = await client.next("welcome")
    assert welcome["seq"] == ids[0]
    seqs = []
    async with asyncio.timeout(60):
        while len(seqs) < count - 1:
            frame = orjson.loads(await client.ws.recv())
            assert frame["type"] not in ("resync", "snapshot"), frame["type"]
            if frame["type"] == "updates":
                seqs.append(frame["seq"])
    assert seqs == ids[1:]
    await client.send({"type": "ping"})
    await client.next("pong")
    await client.close()
    async with server.client() as http:
        page = (await http.get("/get_updates", params={"since": ids[-2], "limit": 5})).json()
        assert page["data"]["last_seq"] == ids[-1]
        future = (await http.get("/get_updates", params={"since": f"{10**13}-0"})).json()
        assert future["data"] == {"updates": [], "last_seq": ids[-1], "resync": True}


# ---- 9. the smaller ones ---------------------------------------------------------------


async def test_openapi_needs_a_token_when_tokens_are_configured(data_dir, redis_url):
    token = "v" * 20
    settings = Settings(data_dir=data_dir, redis_url=redis_url, tokens=f"val:viewer:{token}")
    async with run_server(settings) as server, server.client() as http:
        refused = await http.get("/openapi.json")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        allowed = await http.get("/openapi.json", headers={"authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and "/update_cell" in allowed.json()["paths"]
        assert (await http.get("/healthz")).status_code == 200


async def test_unknown_paths_and_methods_answer_the_json_envelope(server):
    async with server.client() as http:
        for method, path, status, code in [
            ("GET", "/nope", 404, "not_found"),
            ("GET", "/static/nope.js", 404, "not_found"),
            ("GET", "/update_cell", 405, "method_not_allowed"),
            ("DELETE", "/holds", 405, "method_not_allowed"),
            ("PUT", "/view_table/sales", 405, "method_not_allowed"),
        ]:
            response = await http.request(method, path)
            assert response.status_code == status, (method, path)
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["code"] == code
            assert code in HTTP_STATUS


async def test_small_holes(server):
    cell = await a_family_month(server)
    async with server.client() as http:
        no_on = await http.post("/holds", json={"data": {"condition": cell}})
        assert no_on.status_code == 400 and "'on'" in no_on.json()["error"]["message"]
        not_bool = await http.post("/holds", json={"data": {"condition": cell, "on": 1}})
        assert not_bool.status_code == 400
        assert (await read(server, "SELECT count(*) FROM holds")) == [(0,)]
        edit = {"table": "sales", "column": "quantity", "value": 1}
        null = await http.post(
            "/update_cell", json={"data": {**edit, "condition": "sale_id = NULL"}}
        )
        assert null.status_code == 422 and "IS NULL" in null.json()["error"]["message"]
        assert "''" not in null.json()["error"]["message"]
        for text in ("sale_id = 1; DROP TABLE sales", "sale_id = 1; SELECT 2", "sale_id ="):
            response = await http.post("/update_cell", json={"data": {**edit, "condition": text}})
            assert response.status_code == 422
            message = response.json()["error"]["message"]
            assert "serialized" not in message and "syntax error" not in message, message
            assert_no_sql(message)
    answers = await ws_answers(
        server,
        [
            json.dumps({"type": "hold", "id": "h", "condition": cell}),
            json.dumps({"type": "edit", "id": "e", **edit, "condition": "sale_id = NULL"}),
        ],
    )
    assert [code_of(a) for a in answers] == ["bad_message", "bad_condition"]


async def raw_websocket(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand, to send frames a client library would not."""
    port = int(server.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def test_invalid_utf8_closes_the_socket_without_a_traceback(server, caplog):
    caplog.set_level(logging.INFO)
    other = await Client.connect(server, "bystander")
    await other.next("welcome")
    for _ in range(3):
        reader, writer = await raw_websocket(server)
        writer.write(masked_frame(0x1, b'{"type":"hello","name":"\xff\xfe"}'))
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            data = await reader.read()  # until the server closes the connection
        writer.close()
        assert b"\x03\xef" in data  # a close frame with 1007 (invalid frame payload data)
    await other.send({"type": "ping"})
    await other.next("pong")
    await other.close()
    assert not [record for record in caplog.records if record.exc_info], [
        record.getMessage() for record in caplog.records if record.exc_info
    ]
    async with httpx.AsyncClient(base_url=server.base) as http:
        assert (await http.get("/healthz")).status_code == 200
