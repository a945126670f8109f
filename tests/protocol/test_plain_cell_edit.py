"""The fast read of a paste's edits: `plain_cell_edit` answers exactly as `parse_edit`
wherever it answers, and answers for every plain cell edit, as clients send it and as
the edge writes it to the journal."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol.actions import Sender, _journal_block, parse_request_body, request_body
from protocol.catalog import SUMMARY
from protocol.edits import (
    CellBlock,
    Edit,
    EditMany,
    block_columns,
    block_edits,
    parse_edit,
    parse_edit_many,
    plain_cell_edit,
    plain_columns,
)
from protocol.errors import ProtocolError

GOOD_NAMES = st.sampled_from(["Acme", "Zeta", "Widgets", "Ünïcode ✓", "a b"])
BAD_NAMES = st.one_of(
    st.sampled_from([" ", "", "a\x00b", "x" * 201, 0, 1.5, True]), st.text(max_size=4)
)
BAD_MONTHS = st.one_of(
    st.sampled_from(["2024-13", "2024-5", "\u0662\u0660\u0662\u0664-\u0660\u0665", 202405]),
    st.text(max_size=7),
)
DECIMAL_TEXT = st.builds(
    lambda sign, whole, cents: f"{sign}{whole}.{cents:02d}",
    st.sampled_from(["", "-"]),
    st.one_of(st.integers(0, 10**16), st.sampled_from([10**15 - 1, 10**15])),
    st.integers(0, 99),
)
ODD_VALUES = st.one_of(
    st.from_regex(r"\A[ -]?-?[0-9]{0,18}(\.[0-9]{0,4})?[ eE0-9]{0,2}\Z"),
    st.sampled_from(["-0.00", "-0", "0.00", "00.50", "1.5", "+1.00", "1e3", "1.00 "]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
)


@st.composite
def cells(draw: st.DrawFn) -> dict[str, Any]:
    depth = draw(st.integers(0, 3))  # 0: the grand total ... 3: a family
    path = [draw(GOOD_NAMES) for _ in range(depth)] + [None] * (3 - depth)
    month = draw(st.one_of(st.none(), st.sampled_from(["2024-01", "2025-12"])))
    level = (7, 3, 1, 0)[depth]
    return dict(
        zip(("supplier", "brand", "family", "month", "level"), [*path, month, level], strict=True)
    )


@st.composite
def raw_edits(draw: st.DrawFn) -> Any:
    """A plain edit, as the journal or a client has it, then up to two things broken in
    it (or made merely odd)."""
    column = draw(st.sampled_from(["net_amount", "quantity"]))
    value: Any = draw(DECIMAL_TEXT if column == "net_amount" else st.integers(-3, 10**12 + 3))
    if column == "net_amount":  # as a client may send it
        value = draw(st.sampled_from([str, float, Decimal, lambda v: v.rstrip("0")]))(value)
    raw: dict[str, Any] = {
        "table": SUMMARY,
        "column": column,
        "value": value,
        "condition": draw(cells()),
        "spread": draw(st.sampled_from(["proportional", "equal", None, ""])),
    }
    if draw(st.booleans()):  # a client's cell names no level, its edit no spread
        raw["condition"].pop("level")
        raw.pop("spread")
        raw["type"] = "edit"
    for _ in range(draw(st.integers(0, 2))):
        _break(draw, raw)
    return raw


def _break(draw: st.DrawFn, raw: dict[str, Any]) -> None:
    condition = raw.get("condition")
    condition = condition if isinstance(condition, dict) else {}
    how = draw(st.integers(0, 9))
    if how == 0:
        raw["value"] = draw(ODD_VALUES)
    elif how == 1:
        condition["level"] = draw(st.one_of(st.integers(-1, 9), st.booleans(), st.text(max_size=1)))
    elif how == 2:
        condition[draw(st.sampled_from(["supplier", "brand", "family"]))] = draw(
            st.one_of(st.none(), GOOD_NAMES, BAD_NAMES)
        )
    elif how == 3:
        condition["month"] = draw(BAD_MONTHS)
    elif how == 4:
        key = draw(st.sampled_from(["supplier", "brand", "family", "month", "level"]))
        condition.pop(key, None)
    elif how == 5:
        condition[draw(st.sampled_from(["period", "sale_id", "where"]))] = "2024"
    elif how == 6:
        raw.pop(draw(st.sampled_from(sorted(raw))))
    elif how == 7:
        raw[draw(st.sampled_from(["expect", "like", "version", "type"]))] = draw(ODD_VALUES)
    elif how == 8:
        key = draw(st.sampled_from(["table", "column", "spread", "condition"]))
        raw[key] = draw(st.sampled_from(["sales", "level", "net_price", "percent", "like", 1, ""]))
    else:
        raw["column"] = "quantity" if raw.get("column") == "net_amount" else "net_amount"


def test_a_pasted_cell_as_the_grid_sends_it_takes_the_fast_read():
    condition = {"supplier": "Acme", "brand": "Zeta", "family": None, "month": "2024-05"}
    raw = {"type": "edit", "table": SUMMARY, "column": "net_amount", "value": 1234.5}
    fast = plain_cell_edit({**raw, "condition": condition})
    assert fast is not None and fast == parse_edit({**raw, "condition": condition})
    assert fast.value == "1234.50" and fast.condition["level"] == 1


def test_a_path_checked_once_still_gives_each_edit_its_own_cell_and_level_check():
    condition = {"supplier": "Acme", "brand": "Zeta", "family": None, "month": "2024-05"}
    raw = {"type": "edit", "table": SUMMARY, "column": "net_amount", "value": "1.00"}
    first = plain_cell_edit({**raw, "condition": condition})
    again = plain_cell_edit({**raw, "condition": condition})
    assert first is not None and again is not None and first == again
    assert first.condition is not again.condition
    first.condition["brand"] = "changed"
    assert plain_cell_edit({**raw, "condition": condition}).condition["brand"] == "Zeta"
    assert plain_cell_edit({**raw, "condition": {**condition, "level": 0}}) is None
    for odd in ([], {}, ["Acme"], 1, True, float("nan")):
        assert plain_cell_edit({**raw, "condition": {**condition, "supplier": odd}}) is None


def full_parse(raw: Any) -> Edit | str:
    try:
        return parse_edit(raw)
    except ProtocolError as exc:
        return exc.code


def holed(**path: str | None) -> dict[str, Any]:
    condition = {"supplier": "Acme", "brand": "Zeta", "family": "Widgets", "month": None, **path}
    return {"table": SUMMARY, "column": "net_amount", "value": "1.00", "condition": condition}


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(raw_edits())
@example(holed(supplier=None))  # a path with a hole names no cell
@example(holed(brand=None))
def test_the_fast_read_answers_as_the_full_parse_wherever_it_answers(raw: Any):
    fast = plain_cell_edit(raw)
    full = full_parse(raw)
    if fast is not None:
        assert fast == full
    if isinstance(full, Edit) and _plain(full):
        # what the edge writes of it, the writer reads back the fast way, unchanged
        assert plain_cell_edit(full.as_dict()) == full


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_edits(), min_size=1, max_size=6), st.text(max_size=5), st.booleans())
def test_a_journal_block_reads_back_as_the_edge_wrote_it(raws: list[Any], user: str, admin: bool):
    edits = [e for e in map(full_parse, raws) if isinstance(e, Edit) and e.table == SUMMARY]
    if not edits:
        return
    block, sender = EditMany(tuple(edits)), Sender(user, "r-1", admin)
    entry = request_body(block, sender)
    assert parse_request_body(entry) == (block, sender)
    assert (_journal_block(entry) is not None) == all(map(_plain, edits))
    assert (b'"cells":' in entry) == all(map(_plain, edits))  # a paste goes as columns


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_edits(), min_size=1, max_size=6))
def test_a_block_checked_into_columns_is_the_block_its_edits_make(raws: list[Any]):
    """The edge reads a paste straight into the journal's columns (a CellBlock): exactly
    when each of its edits takes the fast read and goes as columns, and then as the
    same columns, edits, journal entry and block as parsing its edits one by one."""
    fast = [plain_cell_edit(raw) for raw in raws]
    one_by_one = None if None in fast else block_columns(tuple(fast))  # type: ignore[arg-type]
    assert plain_columns(raws) == one_by_one
    if one_by_one is not None:
        block = parse_edit_many({"edits": raws})
        assert isinstance(block, CellBlock) and block.size == len(raws)
        assert block.edits == tuple(fast) and block == EditMany(tuple(fast))
        sender = Sender("ann", "r-1")
        assert request_body(block, sender) == request_body(EditMany(block.edits), sender)
        assert parse_request_body(request_body(block, sender)) == (block, sender)


PLAIN_COLUMNS = {
    "column": ["net_amount", "quantity"],
    "spread": ["proportional", "equal"],
    "supplier": ["Acme", None],
    "brand": ["Widgets", None],
    "family": [None, None],
    "month": ["2024-05", None],
    "value": ["12.30", 7],
}


def test_a_paste_goes_to_the_journal_as_columns_and_back():
    cell_edit = parse_edit(holed())
    block = EditMany((cell_edit, replace(cell_edit, spread="equal", value="-0.05")))
    entry = request_body(block, Sender("ann", None))
    assert orjson.loads(entry)["edit_many"] == {"cells": block_columns(block.edits)}
    assert parse_request_body(entry) == (block, Sender("ann", None))
    assert block_edits(PLAIN_COLUMNS) is not None
    # a float (which orjson may have rounded) is read the exact way, as in the long form
    floats = orjson.dumps(
        {"edit_many": {"cells": {**PLAIN_COLUMNS, "value": [0.1, 7]}}, "user": "a", "ref": None}
    )
    assert block_edits(orjson.loads(floats)["edit_many"]["cells"]) is None
    assert [e.value for e in parse_request_body(floats)[0].edits] == ["0.10", 7]


BROKEN_COLUMNS = [
    {**PLAIN_COLUMNS, "value": ["12.30"]},  # lists of different lengths
    {**PLAIN_COLUMNS, "value": ["1" * 30 + ".00", 7]},  # out of range
    {**PLAIN_COLUMNS, "column": ["price", "quantity"]},
    {**PLAIN_COLUMNS, "spread": ["like", "equal"]},
    {**PLAIN_COLUMNS, "supplier": [None, None]},  # a brand without its supplier
    {**PLAIN_COLUMNS, "month": ["2024-5", None]},
    {**PLAIN_COLUMNS, "brand": [["Widgets"], None]},  # unhashable
    {**PLAIN_COLUMNS, "family": "x"},
    {k: [] for k in PLAIN_COLUMNS},
    {**PLAIN_COLUMNS, "level": [0, 7]},
    {k: v for k, v in PLAIN_COLUMNS.items() if k != "value"},
    ["net_amount"],
]


@pytest.mark.parametrize("columns", BROKEN_COLUMNS)
def test_a_broken_block_of_columns_is_refused_as_malformed(columns: Any):
    """Only the edge writes the journal, but a replayed entry is read as carefully as
    a client's message: refused with a code, never half read."""
    assert block_edits(columns) is None
    entry = orjson.dumps({"edit_many": {"cells": columns}, "user": "ann", "ref": None})
    with pytest.raises(ProtocolError) as refused:
        parse_request_body(entry)
    assert refused.value.code == "bad_message"


def _plain(edit: Edit) -> bool:
    """What the fast read takes: no period, no expected value, a plain spread."""
    return (
        edit.spread in ("proportional", "equal")
        and edit.expect is None
        and "period" not in edit.condition
    )


def test_a_journal_entry_with_a_float_is_read_exactly():
    """orjson would round this value to 0.1; read exactly it has too many places."""
    cell = '{"supplier": null, "brand": null, "family": null, "month": null, "level": 7}'
    edit = f'{{"table": "{SUMMARY}", "column": "net_amount", "condition": {cell}, "spread": "equal"'
    for value, outcome in (("0.1000000000000000055511151231257827", None), ("0.25", "0.25")):
        edits = f'[{edit}, "value": {value}}}]'
        entry = f'{{"edit_many": {{"edits": {edits}}}, "user": "ann", "ref": null}}'
        if outcome is None:
            with pytest.raises(ProtocolError) as refused:
                parse_request_body(entry.encode())
            assert refused.value.code == "invalid_value"
        else:
            block, _ = parse_request_body(entry.encode())
            assert block.edits[0].value == outcome
