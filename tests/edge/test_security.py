"""Only the right people change data, and no input can hurt it."""

from __future__ import annotations

import asyncio
import json

import httpx
import orjson
import pytest
import redis as redis_sync
import websockets
from conftest import run_server
from helpers import TIMEOUT, Client, db_read
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import HTTP_STATUS, ProtocolError
from protocol.messages import parse_message
from server.config import Settings
from server.edge.auth import OpenModeRefused, TokenError, load_tokens
from server.runner import make_server

VIEWER, EDITOR, ADMIN = "v" * 20, "e" * 20, "a" * 20
TOKENS = f"val:viewer:{VIEWER},ed:editor:{EDITOR},ada:admin:{ADMIN}"
AN_EDIT = json.dumps(
    {
        "type": "edit",
        "id": "e",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": {"sale_id": 1},
    }
)


@pytest.fixture
async def guarded(data_dir, redis_url):
    settings = Settings(
        data_dir=data_dir,
        redis_url=redis_url,
        tokens=TOKENS,
        edit_rate=5,
        edit_burst=5,
        max_connections=3,
        max_body=4096,
    )
    async with run_server(settings) as server:
        yield server


async def hello(server, token: str | None, **extra) -> websockets.ClientConnection:
    ws = await websockets.connect(server.ws_url, max_size=None, **extra)
    await ws.send(json.dumps({"type": "hello", "name": "x", "token": token}))
    return ws


async def frames_until_close(ws) -> tuple[list[dict], int | None]:
    frames = []
    try:
        async with asyncio.timeout(TIMEOUT):
            async for raw in ws:
                frames.append(orjson.loads(raw))
    except websockets.ConnectionClosed:
        pass
    return frames, ws.close_code


async def test_tokens_and_roles_over_websocket(guarded):
    for token in (None, "wrong-token-wrong-token"):
        frames, code = await frames_until_close(await hello(guarded, token))
        assert frames[0]["type"] == "error" and frames[0]["code"] == "unauthorized"
        assert code == 1008
        assert "wrong-token" not in json.dumps(frames)

    viewer = await hello(guarded, VIEWER)
    welcome = orjson.loads(await viewer.recv())
    assert (welcome["user"], welcome["role"]) == ("val", "viewer")
    await viewer.send(AN_EDIT)
    while (frame := orjson.loads(await viewer.recv()))["type"] != "rejected":
        pass
    assert frame["error"]["code"] == "forbidden"
    await viewer.close()

    editor = await hello(guarded, EDITOR)
    assert orjson.loads(await editor.recv())["role"] == "editor"
    await editor.send(AN_EDIT)
    while (frame := orjson.loads(await editor.recv()))["type"] not in ("applied", "rejected"):
        pass
    assert frame["type"] == "applied"
    await editor.close()


async def test_tokens_and_roles_over_rest(guarded):
    edit = {
        "data": {"table": "sales", "column": "quantity", "value": 2, "condition": {"sale_id": 1}}
    }
    async with guarded.client() as http:
        assert (await http.get("/view_table/sales")).status_code == 401
        bad = await http.get(
            "/view_table/sales", headers={"Authorization": "Bearer nope-nope-nope"}
        )
        assert bad.status_code == 401 and "nope" not in bad.text
        as_viewer = {"Authorization": f"Bearer {VIEWER}"}
        assert (await http.get("/view_table/sales", headers=as_viewer)).status_code == 200
        refused = await http.post("/update_cell", json=edit, headers=as_viewer)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        as_editor = {"Authorization": f"Bearer {EDITOR}"}
        assert (await http.post("/update_cell", json=edit, headers=as_editor)).status_code == 202
        big = await http.post(
            "/update_cell",
            content=b"{" + b" " * 5000 + b"}",
            headers={**as_editor, "content-type": "application/json"},
        )
        assert big.status_code == 413


async def test_hello_deadline_cannot_be_extended_by_traffic(guarded):
    ws = await websockets.connect(guarded.ws_url)
    await ws.send('{"type":"ping"}')
    frames, code = await frames_until_close(ws)
    assert frames[0]["code"] == "hello_required" and code == 1008
    silent = await websockets.connect(guarded.ws_url)
    _, code = await frames_until_close(silent)  # fails on its own deadline if never closed
    assert code == 1008


async def test_foreign_origin_is_refused_at_the_handshake(guarded):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(guarded.ws_url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    own = guarded.base
    ws = await hello(guarded, EDITOR, origin=own)
    assert orjson.loads(await ws.recv())["type"] == "welcome"
    await ws.close()


async def test_oversized_and_binary_frames_close_the_socket(guarded):
    ws = await hello(guarded, EDITOR)
    await ws.recv()
    await ws.send("x" * (Settings.max_block_body + 1))
    _, code = await frames_until_close(ws)
    assert code == 1009
    ws = await hello(guarded, EDITOR)  # an inflation bomb: 16 KB on the wire, 16 MB inflated
    await ws.recv()
    assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
    await ws.send(" " * (16 << 20))
    _, code = await frames_until_close(ws)
    assert code == 1009
    ws = await hello(guarded, EDITOR)
    await ws.recv()
    await ws.send(b"\x00\x01binary")
    frames, code = await frames_until_close(ws)
    assert code == 1003 and any(f.get("code") == "bad_message" for f in frames)


async def test_flooding_is_rate_limited_then_closed(guarded):
    ws = await hello(guarded, EDITOR)
    for _ in range(40):
        try:
            await ws.send('{"type":"ping"}')
        except websockets.ConnectionClosed:
            break
    frames, code = await frames_until_close(ws)
    assert any(
        f.get("error", f).get("code") == "rate_limited"
        for f in frames
        if f["type"] in ("error", "rejected")
    )
    assert code == 1008


async def test_connection_cap(guarded):
    open_ = [await hello(guarded, VIEWER) for _ in range(3)]
    for ws in open_:
        await ws.recv()
    extra = await websockets.connect(guarded.ws_url)  # refused right after the handshake
    frames, code = await frames_until_close(extra)
    assert frames[0]["code"] == "unavailable" and code == 1013
    for ws in open_:
        await ws.close()


def test_open_mode_is_refused_on_a_public_address(tmp_path):
    with pytest.raises(OpenModeRefused) as refused:
        make_server(Settings(data_dir=tmp_path, host="0.0.0.0"))
    assert "DUCKSHEET_TOKENS" in str(refused.value) and "--tokens-file" in str(refused.value)
    make_server(Settings(data_dir=tmp_path, host="0.0.0.0", tokens=TOKENS))  # fine with tokens


def test_token_configuration_errors(tmp_path):
    for spec in ("ann:editor", "ann:boss:" + "t" * 20, "ann:editor:short"):
        with pytest.raises(TokenError):
            load_tokens(spec, None)
    path = tmp_path / "tokens"
    path.write_text(f"# team\nann:editor:{EDITOR}\n\nbob:viewer:{VIEWER}\n")
    assert {i.name for i in load_tokens(None, path).values()} == {"ann", "bob"}
    with pytest.raises(TokenError):
        load_tokens(None, tmp_path / "missing")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
message_keys = st.sampled_from(
    [
        "type",
        "id",
        "table",
        "column",
        "value",
        "condition",
        "spread",
        "expect",
        "name",
        "since",
        "token",
        "tables",
        "on",
        "cell",
    ]
)
messages = st.dictionaries(message_keys, json_values, max_size=8).map(
    lambda d: d | {"type": d.get("type") if isinstance(d.get("type"), str) else "edit"}
)


@settings(max_examples=400)
@given(
    st.one_of(messages.map(lambda m: json.dumps(m)), st.text(max_size=200), st.binary(max_size=200))
)
def test_the_protocol_parser_only_raises_documented_errors(data):
    try:
        parse_message(data)
    except ProtocolError as exc:
        assert exc.code in HTTP_STATUS
        assert isinstance(exc.message, str)


def test_deeply_nested_json_is_a_clean_error():
    with pytest.raises(ProtocolError) as info:
        parse_message("[" * 5000 + "]" * 5000)
    assert info.value.code in ("bad_json", "bad_message")


async def test_open_mode_client_helper_still_works(server):
    client = await Client.connect(server, "ann")
    assert (await client.next("welcome"))["role"] == "admin"
    await client.close()


async def test_rest_client_sends_no_token_in_open_mode(server):
    async with httpx.AsyncClient(base_url=server.base) as http:
        assert (await http.get("/view_table/sales?limit=1")).status_code == 200


ATTACKS = [
    # SQL injection through every field
    {
        "type": "edit",
        "id": "a1",
        "table": "sales; DROP TABLE sales",
        "column": "quantity",
        "value": 1,
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "a2",
        "table": "sales",
        "column": "quantity = 0 --",
        "value": 1,
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "a3",
        "table": "sales",
        "column": "quantity",
        "value": "1; DROP TABLE sales",
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "a4",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": "sale_id = 1; DROP TABLE sales",
    },
    {
        "type": "edit",
        "id": "a5",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": "sale_id = 1 OR (SELECT 1) = 1",
    },
    {
        "type": "edit",
        "id": "a6",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": {"sale_id = 1 OR 1": 1},
    },
    {
        "type": "edit",
        "id": "a7",
        "table": "product",
        "column": "brand",
        "value": "x'); DROP TABLE sales; --",
        "condition": {"product_id": "1 OR 1=1"},
    },
    {
        "type": "edit",
        "id": "a8'; DROP",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": {"sale_id": -1},
    },
    # values: control characters, huge numbers, NaN, wrong types
    {
        "type": "edit",
        "id": "v1",
        "table": "product",
        "column": "brand",
        "value": "bad\u0000name",
        "condition": {"product_id": 1},
    },
    {
        "type": "edit",
        "id": "v2",
        "table": "sales",
        "column": "quantity",
        "value": 10**30,
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "v3",
        "table": "sales",
        "column": "net_price",
        "value": "NaN",
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "v4",
        "table": "sales",
        "column": "quantity",
        "value": [1],
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "v5",
        "table": "sales",
        "column": "quantity",
        "value": {"x": 1},
        "condition": {"sale_id": 1},
    },
    {
        "type": "edit",
        "id": "v6",
        "table": "sales",
        "column": "quantity",
        "value": 1,
        "condition": {"sale_id": {"$gt": 0}},
    },
]


async def test_a_table_of_attacks_changes_nothing(server, redis_url):
    """Every attack gets a clear error; DuckDB and the request stream are untouched."""

    def fingerprint(cur):
        return cur.execute(
            "SELECT (SELECT count(*) FROM sales), (SELECT sum(quantity) FROM sales), "
            "(SELECT sum(hash(product_name, brand)) FROM product), "
            "(SELECT count(*) FROM duckdb_tables())"
        ).fetchone()

    before = await db_read(server, fingerprint)
    ws = await hello(server, None)
    await ws.recv()  # welcome
    for attack in ATTACKS:
        await ws.send(json.dumps(attack))
    await ws.send(json.dumps({"type": "hello", "since": "1; DROP"}))
    await ws.send("\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    await ws.send("[" * 3000 + "]" * 3000)
    answers = []
    async with asyncio.timeout(TIMEOUT):
        while len(answers) < len(ATTACKS) + 3:
            frame = orjson.loads(await ws.recv())
            if frame["type"] in ("rejected", "error"):
                answers.append(frame)
    codes = [f["error"]["code"] if f["type"] == "rejected" else f["code"] for f in answers]
    assert all(code in HTTP_STATUS for code in codes)
    # only a8 (a harmless id with a missing row) may reach the writer, and it is rejected
    reached = [f for f in answers if f["type"] == "rejected" and f["request"] is not None]
    assert [(f["id"], f["error"]["code"]) for f in reached] == [("a8'; DROP", "no_rows")]
    await ws.close()
    assert await db_read(server, fingerprint) == before
    with redis_sync.Redis.from_url(redis_url) as r:
        assert r.xlen("request_duck") == 1


async def test_only_the_holder_or_an_admin_releases_a_hold(data_dir, redis_url):
    other = "o" * 20
    settings = Settings(
        data_dir=data_dir, redis_url=redis_url, tokens=f"{TOKENS},oz:editor:{other}"
    )
    async with run_server(settings) as server:
        (supplier,) = (await read_rows(server, "SELECT supplier FROM product LIMIT 1"))[0]
        cell = {"supplier": supplier, "brand": None, "family": None, "month": None}
        hold = {"data": {"condition": cell, "on": True}}
        release = {"data": {"condition": cell, "on": False}}

        async def post(token: str, body: dict) -> httpx.Response:
            async with server.client() as http:
                auth = {"authorization": f"Bearer {token}"}
                return await http.post("/holds?wait=10", json=body, headers=auth)

        assert (await post(EDITOR, hold)).json()["data"]["status"] == "applied"
        refused = await post(other, release)  # another editor, over REST
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert "ed" in refused.json()["error"]["message"]
        ws = await hello(server, other)  # ... and over WebSocket
        await ws.send(json.dumps({"type": "hold", "id": "r", "condition": cell, "on": False}))
        async with asyncio.timeout(TIMEOUT):
            while (frame := orjson.loads(await ws.recv()))["type"] != "rejected":
                pass
        assert frame["error"]["code"] == "forbidden"
        await ws.close()
        async with server.client() as http:
            listed = (await http.get("/holds", headers={"authorization": f"Bearer {other}"})).json()
        assert [h["by"] for h in listed["data"]["holds"]] == ["ed"]
        assert (await post(ADMIN, release)).json()["data"]["status"] == "applied"  # an admin may
        assert (await post(EDITOR, hold)).json()["data"]["status"] == "applied"
        assert (await post(EDITOR, release)).json()["data"]["status"] == "applied"  # the holder may


async def read_rows(server, sql: str) -> list[tuple]:
    return await db_read(server, lambda cur: cur.execute(sql).fetchall())
