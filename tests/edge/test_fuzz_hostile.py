"""Hostile input, fuzzed: extreme and non-ASCII numbers, huge ids and stray types in
every field of every message, over the parser alone and against a live server (REST and
WebSocket). Bounded: a few hundred examples in all, no deadline per example."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import duckdb
import httpx
import pytest
from conftest import SMALL, SMALL_SALES
from helpers import serve_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from protocol.catalog import TABLES
from protocol.codec import dumps, loads, parse_seq
from protocol.edits import Edit
from protocol.errors import HTTP_STATUS, ProtocolError
from protocol.messages import EditMessage, parse_message
from protocol.values import max_abs
from seed.generate import seed_database

SQL_WORDS = ("SELECT ", "CAST(", "Conversion Error", "Binder Error", "Parser Error", "INT32")
COLUMNS = sorted({name for table in TABLES.values() for name in table.columns})

# ---- JSON text with hostile numbers, written as raw JSON (not through a float) --------

digits = st.text("0123456789", min_size=1, max_size=30)
other_digits = st.text(
    st.characters(categories=["Nd", "No"], exclude_characters="0123456789"),
    min_size=1,
    max_size=4,
)
number_text = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.integers(-(2**64), 2**64).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(lambda a, b: f"{a}.{b}", digits, digits),
    st.builds(lambda a, b: f"-{a}.{b}", digits, digits),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-99, 99), st.integers(-400, 400)),
    st.sampled_from(
        [
            "1e308",
            "-1e308",
            "1e-400",
            "99999999999999.99",
            "-99999999999999.99",
            "9999999999999999.99",
            "100000000000000.01",
            "2147483648",
            "-2147483649",
            "9223372036854775808",
            "18446744073709551615",
            "0.001",
            "-0",
            "-0.0",
            "1E+30",
            "0",
            "1",
            "5",
        ]
    ),
)
seq_like = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", digits, digits),
    st.builds(lambda a, b: f"{a}-{b}", other_digits, digits),
    st.builds(lambda a, b: f"{a}-{b}", digits, other_digits),
    st.sampled_from(
        [
            "18446744073709551615-18446744073709551615",
            "18446744073709551616-0",
            "0-18446744073709551616",
            "0-0",
            "1-",
            "-1",
            "1--1",
            "1-1-1",
        ]
    ),
)
hostile_text = st.one_of(
    number_text,
    other_digits,
    seq_like,
    st.builds(lambda a, b: f" {a}.{b} ", digits, digits),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-inf",
            "1_000",
            "0x10",
            "\u0661\u0662\u0663",
            "\u00b2",
            "",
            " ",
            "\x00",
        ]
    ),
    st.text(max_size=12),
)
string_json = hostile_text.map(json.dumps)
scalar_json = st.one_of(
    number_text, string_json, st.sampled_from(["null", "true", "false", "[]", "{}", "[1]"])
)
condition_text = st.builds(
    lambda column, op, value: f"{column} {op} {value}",
    st.sampled_from(COLUMNS),
    st.sampled_from(["=", "<", ">=", "<>", "IN", "BETWEEN 1 AND", "IS"]),
    st.one_of(number_text, string_json.map(lambda s: "'" + json.loads(s) + "'"), st.just("NULL")),
).map(json.dumps)


def json_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


condition_json = st.one_of(
    st.lists(st.tuples(st.sampled_from(COLUMNS), scalar_json), max_size=4).map(json_object),
    condition_text,
    scalar_json,
)
FIELDS = {
    "id": st.one_of(string_json, scalar_json),
    "table": st.one_of(st.sampled_from(sorted(TABLES)).map(json.dumps), scalar_json),
    "column": st.one_of(st.sampled_from(COLUMNS).map(json.dumps), scalar_json),
    "value": scalar_json,
    "expect": scalar_json,
    "condition": condition_json,
    "cell": condition_json,
    "spread": st.one_of(
        st.sampled_from(['"equal"', '"proportional"', '"percent"', '"like"']), scalar_json
    ),
    "name": scalar_json,
    "since": st.one_of(seq_like.map(json.dumps), scalar_json),
    "token": scalar_json,
    "tables": st.one_of(
        scalar_json, st.lists(scalar_json, max_size=3).map(lambda v: f"[{','.join(v)}]")
    ),
    "on": scalar_json,
}


@st.composite
def message_json(draw: st.DrawFn, kind: str | None = None) -> str:
    kind = kind or draw(st.sampled_from(["edit", "hold", "cursor", "ping", "hello", "nope"]))
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=8))
    pairs = [(name, draw(FIELDS[name])) for name in names]
    if kind in ("edit", "hold") and draw(st.booleans()):  # mostly well-formed around it
        pairs = [("id", '"f"'), *[(k, v) for k, v in pairs if k != "id"]]
    return json_object([("type", json.dumps(kind)), *pairs])


def targeted_condition(table_name: str) -> st.SearchStrategy[str]:
    """A condition on the table's own columns, with hostile constants."""
    names = sorted(TABLES[table_name].columns)
    return st.one_of(
        st.lists(
            st.tuples(st.sampled_from(names), st.one_of(number_text, scalar_json)),
            min_size=1,
            max_size=3,
        ).map(json_object),
        st.builds(
            lambda column, op, value: json.dumps(f"{column} {op} {value}"),
            st.sampled_from(names),
            st.sampled_from(["=", "<", ">=", "<>"]),
            number_text,
        ),
    )


@st.composite
def targeted_edit(draw: st.DrawFn) -> str:
    """A well-formed edit of a real table and editable column but for one or more
    fields, which get hostile values: most requests reach the deepest checks."""
    name = draw(st.sampled_from(sorted(TABLES)))
    table = TABLES[name]
    column = draw(st.sampled_from([c.name for c in table.columns.values() if c.editable]))
    condition = "{}" if table.summary else json_object([(table.key[0], "1")])
    fields = {"table": json.dumps(name), "column": json.dumps(column), "value": "1"}
    fields["condition"] = condition
    hostile = draw(
        st.lists(st.sampled_from(["value", "expect", "condition"]), min_size=1, unique=True)
    )
    for field in hostile:
        values = targeted_condition(name) if field == "condition" else number_or_scalar
        fields[field] = draw(values)
    return json_object(list(fields.items()))


@st.composite
def targeted_hold(draw: st.DrawFn) -> str:
    condition = draw(targeted_condition("sales_summary_by_product_family"))
    return json_object([("condition", condition), ("on", draw(scalar_json))])


def as_message(kind: str, body: str) -> str:
    return '{"type":"' + kind + '","id":"f",' + body[1:]


def block_json(edits: list[str]) -> str:
    return '{"edits":[' + ",".join(edits) + "]}"


# a block of mostly well-formed edits with hostile fields, or a hostile `edits` value
number_or_scalar = st.one_of(number_text, scalar_json)
hostile_block = st.one_of(
    st.lists(targeted_edit(), min_size=1, max_size=6).map(block_json),
    st.one_of(number_or_scalar, hostile_text.map(json.dumps)).map(
        lambda value: '{"edits":' + value + "}"
    ),
)
frames = st.one_of(
    message_json(),
    targeted_edit().map(lambda body: as_message("edit", body)),
    targeted_hold().map(lambda body: as_message("hold", body)),
    hostile_block.map(lambda body: as_message("edit_many", body)),
    st.sampled_from(['{"type":"undo","id":"f"}', '{"type":"redo","id":"f"}', '{"type":"undo"}']),
)


# ---- the parser alone --------------------------------------------------------------------


def assert_in_range(edit: Edit) -> None:
    """What the parser lets through fits the column it is meant for."""
    table = TABLES[edit.table]
    column = table.columns[edit.column]
    if column.type in ("integer", "bigint", "decimal"):
        assert abs(Decimal(edit.value)) <= max_abs(column)  # type: ignore[arg-type]
        if column.min_value is not None:
            assert Decimal(edit.value) >= column.min_value  # type: ignore[arg-type]
    for name, value in edit.condition.items():
        target = table.columns.get(name)
        numeric = target is not None and target.type in ("integer", "bigint", "decimal")
        if numeric and value is not None:
            assert abs(Decimal(value)) <= max_abs(target)  # type: ignore[arg-type]


@settings(max_examples=400, database=None)
@given(frames)
def test_the_parser_refuses_hostile_numbers_with_documented_errors(text):
    try:
        message = parse_message(text)
    except ProtocolError as exc:
        assert exc.code in HTTP_STATUS and HTTP_STATUS[exc.code] < 500
        assert len(exc.message) < 600
        return
    if isinstance(message, EditMessage):
        assert_in_range(message.edit)


@settings(max_examples=300, database=None)
@given(st.one_of(seq_like, hostile_text))
def test_seqs_are_ascii_and_within_64_bits(text):
    try:
        ms, n = parse_seq(text)
    except ProtocolError as exc:
        assert exc.code == "bad_message"
        return
    assert re.fullmatch(r"[0-9]+(-[0-9]+)?", text, re.ASCII)
    assert 0 <= ms < 2**64 and 0 <= n < 2**64


@settings(max_examples=300, database=None)
@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**16), max_value=10**16
    )
)
def test_decimals_cross_json_exactly(value):
    encoded = dumps({"v": value})
    assert loads(encoded)["v"] == value
    assert json.loads(encoded, parse_float=Decimal)["v"] == value


# ---- a live server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[tuple[str, Path]]:
    """A server process (hypothesis calls synchronously, so not on the test's loop)."""
    data = tmp_path_factory.mktemp("fuzz")
    with duckdb.connect(str(data / "ducksheet.duckdb")) as con:
        seed_database(con, sales=SMALL_SALES, seed=5, shape=SMALL)
    env = {"REDIS_URL": redis_server, "DUCKSHEET_EDIT_RATE": "10000"}
    env["DUCKSHEET_EDIT_BURST"] = "10000"
    with serve_process(data, env) as (base, log):
        yield base, log


def assert_clean_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] in HTTP_STATUS and isinstance(error["message"], str)
    for word in SQL_WORDS:
        assert word not in response.text, response.text


JSON = {"content-type": "application/json"}
query_value = st.one_of(hostile_text, number_text, seq_like)


@settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        targeted_edit().map(lambda body: ("/update_cell", body)),
        targeted_hold().map(lambda body: ("/holds", body)),
        hostile_block.map(lambda body: ("/update_cells", body)),
        st.sampled_from(["{}", "[]", '"x"']).map(lambda body: ("/undo", body)),
        message_json().map(lambda body: ("/update_cell", body)),
    ),
    st.one_of(st.none(), query_value),
)
def test_rest_answers_hostile_bodies_with_4xx(live, target, wait):
    base, _ = live
    path, body = target
    params = {} if wait is None else {"wait": wait}
    with httpx.Client(base_url=base, timeout=40) as http:
        response = http.post(path, content='{"data":' + body + "}", params=params, headers=JSON)
        assert_clean_answer(response)
        request_id = (response.json().get("data") or {}).get("request_id")
        if request_id:  # its outcome, as recorded, is clean too
            assert_clean_answer(http.get(f"/requests/{request_id}"))


@settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(
        ["since", "limit", "request", "offset", "condition", "order", "report", "history"]
    ),
    query_value,
    st.sampled_from(sorted(TABLES)),
)
def test_rest_answers_hostile_queries_with_4xx(live, name, value, table):
    base, _ = live
    with httpx.Client(base_url=base, timeout=40) as http:
        if name == "request":
            response = http.get(f"/requests/{quote(value, safe='')}")  # as a client sends it
        elif name == "since":
            response = http.get("/get_updates", params={"since": value, "limit": "1000"})
        elif name == "limit":
            response = http.get("/get_updates", params={"limit": value})
        elif name == "report":
            response = http.get("/reports/top-5-by-revenue", params={"limit": value})
        elif name == "history":
            params = {"table": table, "condition": value, "before": value, "user": value[:60]}
            keys = ("table", "condition") if len(value) % 3 == 0 else ("user", "before", "table")
            response = http.get("/history", params={k: params[k] for k in keys})
        elif name == "condition" and len(value) % 2:
            columns = sorted(TABLES[table].columns)
            column = columns[len(value) % len(columns)]
            condition = json.dumps({column: value})
            response = http.get(f"/view_table/{table}", params={"condition": condition})
        else:
            response = http.get(f"/view_table/{table}", params={name: value})
        assert_clean_answer(response)


@settings(max_examples=120, database=None, suppress_health_check=list(HealthCheck))
@given(frames, st.booleans())
def test_websocket_answers_hostile_frames_and_stays_open(live, text, as_hello):
    base, _ = live
    with connect(base.replace("http://", "ws://") + "/ws", max_size=None) as ws:
        if as_hello:  # the first frame: welcome, or an error frame and a policy close
            ws.send(text)
            try:
                while True:
                    frame = json.loads(ws.recv(timeout=15))
                    if frame["type"] in ("welcome", "error"):
                        break
            except ConnectionClosed:
                pytest.fail("closed without a word")
            if frame["type"] == "error":
                assert frame["code"] in HTTP_STATUS
                with pytest.raises(ConnectionClosed):
                    while True:
                        ws.recv(timeout=15)
                assert ws.protocol.close_code in (1008, 1013)
            return
        ws.send(json.dumps({"type": "hello", "name": "fuzz"}))
        ws.send(text)
        ws.send('{"type":"ping"}')
        while True:  # the socket survives and answers what comes after
            frame = json.loads(ws.recv(timeout=15))
            if frame["type"] in ("error", "rejected"):
                error = frame["error"] if frame["type"] == "rejected" else frame
                assert error["code"] in HTTP_STATUS
                for word in SQL_WORDS:
                    assert word not in json.dumps(frame)
            if frame["type"] == "pong":
                break


def test_the_server_stayed_healthy_and_logged_no_tracebacks(live):
    base, log = live
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert "ERROR" not in text, text[-3000:]
    for word in SQL_WORDS:
        assert word not in text, text[-3000:]
