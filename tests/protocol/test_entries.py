"""Response entries: a payload split into its outcomes and its ready `updates` frame,
and joined again exactly."""

from __future__ import annotations

from decimal import Decimal

import orjson

from protocol.codec import dumps, loads
from protocol.entries import FRAME, META, entry_fields, joined, updates_message

BIG = Decimal("99999999999999.99")  # no double prints back as this


def payload(**extra) -> dict:
    return {
        "seq": "7-0",
        "prev": "6-0",
        "rows": [{"table": "s", "supplier": "Acme", "level": 3, "net_amount": BIG}],
        "base": [{"table": "sales", "sale_id": 4, "net_price": Decimal("0.10")}],
        "base_truncated": False,
        "holds": [],
        "by": ["ann"],
        "results": [{"request": "7-0", "status": "applied", "ref": "r-1"}],
        **extra,
    }


def test_the_frame_field_is_the_updates_message_with_numbers_as_decided() -> None:
    fields = entry_fields(payload())
    assert fields[FRAME] == dumps(updates_message([payload()]))
    assert b'"net_amount":99999999999999.99' in fields[FRAME]
    assert b'"net_price":0.10' in fields[FRAME]  # the decimal text, not a double's 0.1


def test_the_meta_field_keeps_everything_but_the_changed_rows() -> None:
    meta = orjson.loads(entry_fields(payload(versions=[{"name": "v2"}]))[META])
    assert "rows" not in meta and "base" not in meta and "holds" not in meta
    assert meta["results"][0]["ref"] == "r-1" and meta["prev"] == "6-0"
    assert meta["versions"] == [{"name": "v2"}]


def test_joining_the_fields_gives_the_payload_back_exactly() -> None:
    for original in (payload(), payload(base_truncated=True, reload=True)):
        fields = entry_fields(original)
        assert joined(loads(fields[META]), loads(fields[FRAME])) == original


def test_a_batch_that_changed_nothing_has_no_frame() -> None:
    quiet = payload(rows=[], base=[])
    fields = entry_fields(quiet)
    assert FRAME not in fields
    assert joined(loads(fields[META]), None) == quiet


def test_an_entry_written_before_the_split_is_read_as_it_was() -> None:
    whole = loads(dumps(payload()))
    assert joined(whole, None) is whole
