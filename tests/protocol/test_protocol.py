"""Validation at the edge: the catalog, values, conditions, messages."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.catalog import SUMMARY
from protocol.codec import cents_json, dumps, loads, loads_published, parse_seq
from protocol.edits import parse_edit, parse_edit_many, period_months
from protocol.errors import ProtocolError
from protocol.messages import EditMessage, Hello, Ping, parse_message


def edit(**overrides):
    base = {"table": "sales", "column": "net_price", "value": 10, "condition": {"sale_id": 1}}
    return {**base, **overrides}


def code_of(message) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_edit(message)
    return info.value.code


def test_values_are_normalized_exactly():
    assert parse_edit(edit(value=12.3)).value == "12.30"
    assert parse_edit(edit(value="-0.5")).value == "-0.50"
    assert parse_edit(edit(column="quantity", value=4.0)).value == 4
    assert parse_edit(edit(column="invoice_date", value="2024-02-29")).value == "2024-02-29"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"table": "nope"}, "unknown_table"),
        ({"table": 3}, "bad_message"),
        ({"column": "nope"}, "unknown_column"),
        ({"column": "sale_id"}, "not_editable"),
        ({"value": "abc"}, "invalid_value"),
        ({"value": 1.234}, "invalid_value"),
        ({"value": float("nan")}, "invalid_value"),
        ({"value": True}, "invalid_value"),
        ({"value": None}, "invalid_value"),
        ({"value": 10**20}, "invalid_value"),
        ({"column": "quantity", "value": 1.5}, "invalid_value"),
        ({"column": "invoice_date", "value": "2023-02-29"}, "invalid_value"),
        ({"condition": None}, "condition_required"),
        ({"condition": {"nope": 1}}, "unknown_column"),
        ({"condition": {"sale_id": [1, 2]}}, "bad_condition"),
        ({"condition": {"sale_id": "x"}}, "bad_condition"),
        ({"condition": "sale_id = "}, "bad_condition"),
        ({"spread": "sideways"}, "unknown_spread"),
    ],
)
def test_bad_edits_get_precise_codes(overrides, code):
    assert code_of(edit(**overrides)) == code


def percent_edit(value, **overrides):
    cell = {"supplier": "A", "brand": "B", "month": "2024-03"}
    message = {"table": SUMMARY, "column": "net_amount", "condition": cell, "value": value}
    return {**message, "spread": "percent", **overrides}


def test_a_percent_spread_carries_the_percent_exactly():
    assert parse_edit(percent_edit(5)).value == "5.0000"
    assert parse_edit(percent_edit("-3.25")).value == "-3.2500"
    assert parse_edit(percent_edit(-100)).value == "-100.0000"
    assert parse_edit(percent_edit(10_000, column="quantity")).value == "10000.0000"


@pytest.mark.parametrize(
    ("value", "overrides", "code"),
    [
        (-100.01, {}, "invalid_value"),  # below zero
        (10_000.01, {}, "invalid_value"),
        ("0.00001", {}, "invalid_value"),  # 5 decimal places
        ("1e400", {}, "invalid_value"),
        ("5%", {}, "invalid_value"),  # the grid turns "+5%" into 5; the API takes numbers
        ("\u0665", {}, "invalid_value"),  # an Arabic-Indic five
        (None, {}, "invalid_value"),
        (
            5,
            {"table": "sales", "column": "quantity", "condition": {"sale_id": 1}},
            "unknown_spread",
        ),
    ],
)
def test_bad_percent_spreads_are_refused(value, overrides, code):
    assert code_of(percent_edit(value, **overrides)) == code


def like_edit(like, **cell):
    cell = cell or {"supplier": "A", "brand": "B", "month": "2024-03"}
    message = {"table": SUMMARY, "column": "net_amount", "condition": cell, "value": 10}
    return {**message, "spread": "like", "like": like}


def test_a_like_spread_names_another_month_and_round_trips():
    parsed = parse_edit(like_edit({"period": "2023-03"}))
    assert (parsed.spread, parsed.like) == ("like", "2023-03")
    assert parse_edit(parsed.as_dict()) == parsed


@pytest.mark.parametrize(
    ("like", "cell", "code"),
    [
        (None, {}, "bad_message"),
        ({"version": "Not A Name"}, {}, "bad_message"),
        ({"period": "2023-03", "extra": 1}, {}, "bad_message"),
        ({"period": "2023-13"}, {}, "bad_message"),
        ({"period": "2023-Q1"}, {}, "bad_message"),  # a quarter for a month
        ({"period": "2024-03"}, {}, "bad_message"),  # its own month
        ({"period": "2023-03"}, {"supplier": "A", "brand": "B"}, "bad_message"),  # all months
    ],
)
def test_bad_like_spreads_are_refused(like, cell, code):
    assert code_of(like_edit(like, **cell)) == code


def period_edit(period, **extra):
    cell = {"supplier": "A", "brand": "B", "period": period, **extra}
    return {"table": SUMMARY, "column": "net_amount", "condition": cell, "value": 10}


def test_a_period_names_a_quarter_a_year_or_a_month():
    quarter = parse_edit(period_edit("2025-Q1"))
    assert (quarter.condition["month"], quarter.condition["period"]) == (None, "2025-Q1")
    assert parse_edit(quarter.as_dict()) == quarter
    assert parse_edit(period_edit("2025")).condition["period"] == "2025"
    month = parse_edit(period_edit("2025-03")).condition
    assert month["month"] == "2025-03" and "period" not in month
    assert period_months("2025-Q2") == {"2025-04", "2025-05", "2025-06"}
    assert len(period_months("2025")) == 12 and period_months(None) is None


@pytest.mark.parametrize(
    ("period", "extra"),
    [
        ("2025-Q5", {}),
        ("2025-Q0", {}),
        ("25", {}),
        ("2025-13", {}),
        (2025, {}),
        (None, {}),
        ("2025-Q1", {"month": "2025-01"}),
        ("\u0662025", {}),
    ],
)
def test_bad_periods_are_refused(period, extra):
    assert code_of(period_edit(period, **extra)) == "bad_condition"


def test_text_values_are_bounded_and_clean():
    product = {"table": "product", "column": "brand", "condition": {"product_id": 1}}
    assert parse_edit({**product, "value": "Nova"}).value == "Nova"
    assert code_of({**product, "value": "x" * 500}) == "invalid_value"
    assert code_of({**product, "value": "a\x00b"}) == "invalid_value"
    assert code_of({**product, "value": "   "}) == "invalid_value"


def test_summary_condition_names_one_cell():
    parsed = parse_edit(
        {
            "table": SUMMARY,
            "column": "net_amount",
            "value": 5,
            "condition": {"supplier": "A", "brand": "B"},
        }
    )
    assert parsed.condition == {
        "supplier": "A",
        "brand": "B",
        "family": None,
        "month": None,
        "level": 1,
    }
    whole = parse_edit({"table": SUMMARY, "column": "quantity", "value": 5, "condition": {}})
    assert whole.condition["level"] == 7
    for bad in ({"brand": "B"}, {"supplier": "A", "family": "f"}, {"quantity": 1}):
        assert (
            code_of({"table": SUMMARY, "column": "net_amount", "value": 1, "condition": bad})
            == "not_a_cell"
        )
    wrong_level = {"supplier": "A", "level": 0}
    assert (
        code_of({"table": SUMMARY, "column": "net_amount", "value": 1, "condition": wrong_level})
        == "not_a_cell"
    )
    assert code_of(
        {"table": SUMMARY, "column": "net_amount", "value": 1, "condition": {"month": "2024-13"}}
    ) == ("bad_condition")


def test_messages():
    hello = parse_message(b'{"type":"hello","name":"ann","since":"12-3"}')
    assert isinstance(hello, Hello) and hello.since == "12-3" and hello.name == "ann"
    assert isinstance(parse_message('{"type":"ping"}'), Ping)
    message = parse_message(dumps({"type": "edit", "id": "e1", **edit()}))
    assert isinstance(message, EditMessage) and message.id == "e1"
    for raw, code in [
        ("{", "bad_json"),
        ("[]", "bad_message"),
        ('{"type":"nope"}', "unknown_type"),
        ('{"type":"hello","since":"abc"}', "bad_message"),
        ('{"type":"edit","table":"sales"}', "bad_message"),
    ]:
        with pytest.raises(ProtocolError) as info:
            parse_message(raw)
        assert info.value.code == code, raw


def test_seq_parsing_orders_stream_ids():
    assert parse_seq("10-2") > parse_seq("9-99")
    assert parse_seq("5") == (5, 0)
    with pytest.raises(ProtocolError):
        parse_seq("-1")
    with pytest.raises(ProtocolError):
        parse_seq(f"{1 << 64}-0")


def test_string_conditions_are_parsed_by_duckdb_and_checked():
    simple = parse_edit(
        edit(
            table="product",
            column="brand",
            value="X",
            condition="supplier = 'Smith Ltd' AND family = 'impact'",
        )
    )
    assert simple.condition == {"supplier": "Smith Ltd", "family": "impact"}
    rich = parse_edit(
        edit(
            column="quantity",
            value=1,
            condition="quantity BETWEEN 1 AND 3 OR customer_id IN (1, 2)",
        )
    )
    assert rich.condition == {"$where": "quantity BETWEEN 1 AND 3 OR customer_id IN (1, 2)"}
    cell = parse_edit(
        {
            "table": SUMMARY,
            "column": "net_amount",
            "value": 1,
            "condition": "supplier = 'A' AND month = '2024-01'",
        }
    )
    assert cell.condition["level"] == 3 and cell.condition["month"] == "2024-01"
    for bad, code in [
        ("sale_id = 1; DROP TABLE sales", "bad_condition"),
        ("sale_id = (SELECT max(sale_id) FROM sales)", "bad_condition"),
        ("upper(product_name) = 'X'", "bad_condition"),
        ("nope = 1", "unknown_column"),
        ("quantity = 'many'", "bad_condition"),
        ("sale_id = NULL", "bad_condition"),
        ("1 = 1", "bad_condition"),
        ("x" * 3000, "bad_condition"),
    ]:
        assert code_of(edit(condition=bad)) == code, bad
    summary_range = {
        "table": SUMMARY,
        "column": "net_amount",
        "value": 1,
        "condition": "quantity > 5",
    }
    assert code_of(summary_range) == "not_a_cell"


def test_block_edits_are_checked_edit_by_edit():
    cell = {"supplier": "A", "brand": "B", "family": None, "month": "2024-03"}
    edit = {"table": SUMMARY, "column": "net_amount", "value": "1.00", "condition": cell}
    block = parse_edit_many({"edits": [edit, {**edit, "value": 2}]})
    assert [e.value for e in block.edits] == ["1.00", "2.00"]
    for bad, code, index in (
        ({"edits": []}, "bad_message", None),
        ({"edits": "x"}, "bad_message", None),
        ({"edits": [edit] * 3}, "too_many_edits", None),
        ({"edits": [edit, {**edit, "value": "1.001"}]}, "invalid_value", 1),
        ({"edits": [{**edit, "condition": "supplier = 'A'"}]}, "bad_condition", 0),
        (
            {"edits": [edit, {**edit, "table": "product", "condition": {"supplier": "A"}}]},
            "unknown_column",
            1,
        ),
        (
            {
                "edits": [
                    {
                        "table": "sales",
                        "column": "quantity",
                        "value": 1,
                        "condition": {"product_id": 1},
                    }
                ]
            },
            "not_a_cell",
            0,
        ),
    ):
        with pytest.raises(ProtocolError) as refused:
            parse_edit_many(bad, max_edits=2)
        assert refused.value.code == code
        assert refused.value.details.get("index") == index


@given(
    st.integers(-(10**17) + 1, 10**17 - 1),
    st.text(alphabet="0123456789eE. ab", max_size=30),  # digits in names do not matter
)
def test_published_payloads_pass_on_every_amount_exactly(cents, name):
    """The hub reads the writer's payloads with doubles where a double prints back as
    the same decimal, exactly otherwise: what a viewer gets is the amount published."""
    amount = Decimal(cents) / 100
    text = dumps({"rows": [{"net_amount": amount, "brand": name}]})
    passed_on = json.loads(dumps(loads_published(text)), parse_float=Decimal)
    assert passed_on["rows"][0] == {"net_amount": amount, "brand": name}


@given(st.integers(min_value=-(10**26), max_value=10**26) | st.integers(-1000, 1000))
def test_cents_go_out_as_the_number_their_decimal_does(cents):
    """The writer's cents reach the wire as exactly the text a Decimal amount would:
    signs, a single-digit cent, zero and amounts past 64 bits alike (up to Decimal's
    28 digits: DECIMAL(18, 2) cells stay far below)."""
    amount = Decimal(cents).scaleb(-2)
    assert dumps({"v": cents_json(cents)}) == dumps({"v": amount})
    assert Decimal(json.loads(dumps(cents_json(cents)), parse_float=Decimal)) == amount


# number literals as clients write them: from a few digits to more than a double keeps,
# with trailing zeros, exponents, tiny fractions and negative zero
number_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,19})\.[0-9]{1,20}([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["-0.0", "0.00001", "1.50", "99999999999999.99", "1e400", "1E-400", "0.0E310"]),
)


def _in_a_double(number: Decimal) -> bool:
    return not number.is_finite() or number == 0 or number.adjusted() <= 308


@given(st.lists(st.tuples(st.text(max_size=8), number_text), min_size=1, max_size=12))
def test_numbers_are_read_exactly_whatever_their_digits(pairs):
    """loads reads every number as the exact Decimal its text writes, never as the
    double orjson reads first; only numbers past a double's range are refused."""
    text = "[" + ",".join(f"[{json.dumps(label)},{number}]" for label, number in pairs) + "]"
    want = json.loads(text, parse_float=Decimal)
    if not all(_in_a_double(Decimal(v)) for _, v in want):
        with pytest.raises(ProtocolError) as refused:
            loads(text)
        assert refused.value.code == "bad_json"
        return
    got = loads(text)
    assert got == want
    assert [type(v) for _, v in got] == [type(v) for _, v in want]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.text()  # any code point but a lone surrogate, written as it is (UTF-8)
    | st.integers(-(10**60), 10**60)  # past 64 bits
    | st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**300), max_value=10**300),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _json_text(value) -> str:
    """JSON text with Decimals written as the number literals they are ("1.5E+3")."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(map(_json_text, value)) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return json.dumps(value, ensure_ascii=False)


@given(json_values, st.booleans())
def test_loads_reads_any_document_as_the_exact_stdlib_parse_does(value, as_bytes):
    """Any document, as text or bytes: what the stdlib reads with fractions and
    exponents as Decimal, numbers of the same types."""
    text = _json_text(value)
    want = json.loads(text, parse_float=Decimal)
    got = loads(text.encode() if as_bytes else text)
    assert got == want
    assert json.dumps(got, default=repr) == json.dumps(want, default=repr)  # types too


@pytest.mark.parametrize(
    "hostile",
    [
        b'{"a": 7e999999999}',  # a Decimal with a billion-digit integer part
        b"[" + b",".join([b"7" * 4301] * 200) + b"]",  # past Python's int limit, 200 times
        b'{"a": "\\ud800"}',  # a lone surrogate
        b'{"a": "\xff"}',  # not UTF-8
        b"[" * 5000 + b"]" * 5000,  # deeper than any client nests
        b'{"a": NaN}',
        b'{"a": 1} trailing',
    ],
)
def test_hostile_json_is_refused_as_bad_json(hostile):
    with pytest.raises(ProtocolError) as refused:
        loads(hostile)
    assert refused.value.code == "bad_json"
