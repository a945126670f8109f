"""A block's rows get their shares after its payload is built (blocks.PendingRows):
cells first, rows when anything reads them, and bounds that give way to exact values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
from test_collab_properties import image

from protocol.catalog import SUMMARY
from protocol.codec import dumps, loads
from protocol.edits import parse_edit_many
from server.writer import blocks
from server.writer.blocks import _magnitude
from server.writer.changes import Change
from server.writer.decide import Request
from server.writer.direct import DirectWriter

KEYS = ("supplier", "brand", "family", "month")


def family_cells(con: duckdb.DuckDBPyConnection, count: int) -> list[dict[str, Any]]:
    """Conditions of the first family-month cells whose net amount is not zero."""
    rows = con.execute(
        f"SELECT supplier, brand, family, month FROM {SUMMARY} "
        "WHERE level = 0 AND month IS NOT NULL AND net_amount > 0 ORDER BY ALL LIMIT ?",
        [count],
    ).fetchall()
    return [dict(zip(KEYS, row, strict=True)) for row in rows]


def edit(column: str, value: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {"table": SUMMARY, "column": column, "value": value, "condition": condition}


def test_a_pasted_block_is_decided_before_its_rows_get_their_shares(fresh):
    con, twin = fresh(), fresh()
    deferring, direct = DirectWriter(con).decider, DirectWriter(twin)
    cells = family_cells(con, 4)
    paste = parse_edit_many({"edits": [edit("net_amount", "1234.56", c) for c in cells]})
    cents = deferring.state.sales.cents.copy()

    payload, effects = deferring.decide([Request("5000-0", paste, "ann")], defer=True)

    assert payload["results"][0]["status"] == "applied"
    assert payload["base"] == [] and payload["base_truncated"]  # rows: not spread yet
    assert np.array_equal(deferring.state.sales.cents, cents)
    assert [row["net_amount"] for row in _month_rows(payload)] == [Decimal("1234.56")] * 4
    assert effects.steps[0].rows == {} and "ann" not in effects.stacks

    deferring.finish()

    assert not np.array_equal(deferring.state.sales.cents, cents)
    assert effects.steps[0].rows["net_price"].sale_ids.size
    assert [s.request for s in effects.stacks["ann"][0]] == ["5000-0"]
    direct.apply([Request("5000-0", paste, "ann")])
    assert np.array_equal(deferring.state.sales.cents, direct.decider.state.sales.cents)
    assert deferring.state.summary == direct.decider.state.summary


def _month_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    rows = loads(dumps(payload["rows"]))
    return [r for r in rows if r["level"] == 0 and r["month"] is not None]


def test_edits_one_by_one_after_a_deferred_wave_read_its_rows(fresh):
    """A wave of two family cells is deferred; the quantity edit after it goes alone
    (a wave of one): its rows are spread first, so it sees them."""
    con, twin = fresh(), fresh()
    deferring, direct = DirectWriter(con, defer=True), DirectWriter(twin)
    cells = family_cells(con, 2)
    edits = [edit("net_amount", f"{100 + i}.25", c) for i, c in enumerate(cells)]
    edits.append(edit("quantity", "977", cells[0]))
    paste = parse_edit_many({"edits": edits})

    got = deferring.apply([Request("5100-0", paste, "ann")])
    want = direct.apply([Request("5100-0", paste, "ann")])

    assert got["results"] == want["results"] and got["results"][0]["status"] == "applied"
    assert image(con) == image(twin)


def test_a_bound_in_the_way_gives_way_to_the_exact_change(fresh, monkeypatch):
    """A deferred wave counts in the block's peak with a bound of its change; a later
    check that the bound would fail spreads the wave and counts it exactly."""
    con = fresh()
    decider, cells = DirectWriter(con).decider, family_cells(con, 2)
    paste = parse_edit_many({"edits": [edit("net_amount", "777.77", c) for c in cells]})
    change, peak = Change(), []
    assert decider._spread_many(list(paste.edits), change, peak, defer=True)
    (pending,) = change.pending
    exact = _magnitude(pending.settled.row_shares(pending.units) - pending.units)
    assert pending.bound > exact
    counted = peak[1]
    monkeypatch.setattr(blocks, "SUMMARY_CENTS", counted - (pending.bound - exact) / 2)

    assert decider._stays_in_range(0.0, 100, peak, change)

    assert change.pending == [] and change.rows["net_price"]
    assert abs(peak[1] - (counted - pending.bound + exact)) < 1e-6 * counted
