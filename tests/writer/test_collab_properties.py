"""Properties of block edits, undo and redo (DESIGN §12) over random sequences by
several users: the summary stays exact, an undo right after a request restores the
database exactly, a rejected request (an undo_conflict too) changes nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb
from helpers import OUTCOME_REPORTS, assert_state_matches_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import SLOW, _ids, money, operation, to_message

from protocol.actions import Action, Undo
from protocol.catalog import SUMMARY
from protocol.codec import dumps
from protocol.edits import parse_edit, parse_edit_many, parse_hold
from protocol.errors import ProtocolError
from server.analytics.check import footing_errors, summary_drift
from server.writer import blocks
from server.writer.decide import Request
from server.writer.direct import DirectWriter

USERS = ("ann", "bob")
near = st.integers(0, 3)  # a few rows and cells, so users touch the same ones
CELL_OPS = st.one_of(
    st.tuples(
        st.just("leaf"), near, st.sampled_from(["quantity", "net_price"]), st.integers(0, 500)
    ),
    st.tuples(
        st.just("spread"),
        near,
        st.sampled_from(["net_amount", "quantity"]),
        money,
        st.sampled_from(["proportional", "equal", "percent", "like"]),
        st.sampled_from([0, 1]),
        st.booleans(),
    ),
    st.tuples(st.just("hold"), near, st.booleans(), st.sampled_from([0, 1]), st.booleans()),
    operation.filter(lambda op: op[0] in ("move", "relink")),
)
user = st.sampled_from(USERS)
# (user, op): a request of one of the existing kinds, a block of cell edits, undo, redo
collab_operation = st.one_of(
    st.tuples(user, operation),
    st.tuples(
        user,
        st.tuples(
            st.just("block"),
            st.lists(CELL_OPS.filter(lambda op: op[0] != "hold"), min_size=1, max_size=5),
        ),
    ),
    st.tuples(user, st.just(("undo",))),
    st.tuples(user, st.just(("redo",))),
    # ann edits a row, bob edits it after her, ann undoes: an undo_conflict
    st.tuples(st.just("ann"), st.tuples(st.just("conflict"), near, st.integers(0, 500))),
)


def expanded(ops: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for name, op in ops:
        if op[0] == "conflict":
            out += [
                ("ann", ("leaf", op[1], "quantity", op[2])),
                ("bob", ("leaf", op[1], "quantity", op[2] + 1)),
                ("ann", ("undo",)),
            ]
        else:
            out.append((name, op))
    return out


REPORT: Counter[str] = OUTCOME_REPORTS.setdefault(
    "tests/writer/test_collab_properties.py", Counter()
)


def action_for(con: duckdb.DuckDBPyConnection, op: tuple[Any, ...]) -> Action | None:
    """The action of an op, or None when the edge would refuse it already."""
    if op[0] in ("undo", "redo"):
        return Undo(redo=op[0] == "redo")
    try:
        if op[0] == "block":
            return parse_edit_many({"edits": [to_message(con, o)[1] for o in op[1]]})
        kind, message = to_message(con, op)
        return parse_edit(message) if kind == "edit" else parse_hold(message)
    except ProtocolError:
        return None


def requests_for(con: duckdb.DuckDBPyConnection, ops: list[tuple[str, Any]]) -> list[Request]:
    requests = []
    for name, op in expanded(ops):
        action = action_for(con, op)
        if action is not None:
            requests.append(Request(f"{3000 + next(_ids)}-0", action, name))
    return requests


def image(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], ...]:
    return (
        con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall(),
        con.execute(
            f"SELECT supplier, brand, family, month, level, quantity, net_amount, line_count "
            f"FROM {SUMMARY} ORDER BY ALL"
        ).fetchall(),
        con.execute("SELECT * EXCLUDE (held_at) FROM holds ORDER BY ALL").fetchall(),
    )


def pushed(writer: DirectWriter, user: str, request: str) -> bool:
    """Did the request leave an undo step (an applied edit that changed rows)?"""
    done, _ = writer.decider.stacks.listing(user)
    return done[-1:] == [request]


@settings(
    max_examples=150 if SLOW else 40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(collab_operation, min_size=4, max_size=16))
def test_undo_redo_and_blocks_keep_everything_exact(fresh, ops):
    con = fresh()
    writer = DirectWriter(con)
    last: tuple[str, tuple] | None = None  # (user, image before) of the last undoable step
    for name, op in expanded(ops):
        action = action_for(con, op)
        if action is None:
            continue
        before = image(con)
        request = Request(f"{4000 + next(_ids)}-0", action, name)
        result = writer.apply([request])["results"][0]
        code = result["status"] if result["status"] == "applied" else result["error"]["code"]
        REPORT[f"{op[0]} {code}"] += 1
        if result["status"] == "rejected":
            assert image(con) == before, code  # nothing half-applied, undo_conflict too
        if isinstance(action, Undo) and not action.redo and last is not None and last[0] == name:
            assert code == "applied"
            assert image(con) == last[1]  # every row and cell as before the request
        last = (name, before) if pushed(writer, name, request.id) else None
    assert summary_drift(con) == []
    assert footing_errors(con) == []
    assert_state_matches_database(writer)
    # the stacks DuckDB holds are the ones in memory (what a restart finds)
    restarted = DirectWriter(con)
    for name in USERS:
        assert restarted.decider.stacks.listing(name) == writer.decider.stacks.listing(name)


@settings(
    max_examples=60 if SLOW else 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(collab_operation, min_size=1, max_size=12), st.integers(0, 11))
def test_a_block_decides_like_its_edits_one_after_the_other(fresh, ops, at):
    """The vectorized path for runs of spreads in a block gives exactly what deciding
    the same edits one by one gives (here: as separate requests, all applied)."""
    con = fresh()
    writer = DirectWriter(con)
    requests = requests_for(con, ops)
    if requests[:at]:
        writer.apply(requests[:at])  # some history first: holds, moved rows, zeros
    cells = con.execute(
        f"SELECT supplier, brand, family, month, level FROM {SUMMARY} "
        "WHERE level IN (0, 1) AND month IS NOT NULL ORDER BY ALL LIMIT 30"
    ).fetchall()
    edits = [
        {
            "table": SUMMARY,
            "column": "net_amount",
            "value": f"{(i * 7919) % 5000}.{i % 100:02d}",
            "condition": dict(zip(("supplier", "brand", "family", "month"), c[:4], strict=True)),
        }
        for i, c in enumerate(cells)
    ]
    twin = fresh()
    twin_writer = DirectWriter(twin)
    if requests[:at]:
        twin_writer.apply([Request(r.id, r.action, r.user) for r in requests[:at]])
    paste = parse_edit_many({"edits": edits})
    block = writer.apply([Request(f"{6000 + next(_ids)}-0", paste, "ann")])
    singles = twin_writer.apply(
        [Request(f"{7000 + next(_ids)}-0", parse_edit(e), "ann") for e in edits]
    )
    statuses = [r["status"] for r in singles["results"]]
    if all(s == "applied" for s in statuses):
        assert block["results"][0]["status"] == "applied"
        assert image(con) == image(twin)
    else:
        first = statuses.index("rejected")
        assert block["results"][0]["error"]["index"] == first


def _display_order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The expanded grid's order: each brand row, then its families' rows; months."""
    supplier, brand, family, month, level = row[:5]
    return (supplier, brand, -level, family or "", month)


@settings(
    max_examples=60 if SLOW else 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(collab_operation, min_size=1, max_size=10),
    st.integers(0, 10),
    st.integers(0, 40),
    st.integers(1, 10**6),
    st.booleans(),
)
def test_a_pasted_brand_row_above_all_its_families_is_settled_by_them(
    fresh, ops, at, skip, salt, hold_elsewhere
):
    """Pasting a region of the expanded grid (a brand row, then its families' rows):
    a brand-month cell whose every family cell of that month comes later in the block
    is settled by them, so the block gives exactly what its other edits give one by
    one (each sales row spread once, by its family), and the brand ends as their sum.
    While anything is held, or for a brand of zero, every edit counts, one by one."""
    con = fresh()
    requests = requests_for(con, ops)[:at]
    twin = fresh()
    writer, twin_writer = DirectWriter(con), DirectWriter(twin)
    if requests:
        writer.apply(requests)
        twin_writer.apply([Request(r.id, r.action, r.user) for r in requests])
    rows = con.execute(
        f"SELECT supplier, brand, family, month, level, net_amount FROM {SUMMARY} "
        "WHERE level IN (0, 1) AND month IS NOT NULL"
    ).fetchall()
    rows = sorted(rows, key=_display_order)[skip : skip + 60]
    keys = ("supplier", "brand", "family", "month")
    edits = [
        {
            "table": SUMMARY,
            "column": "net_amount",
            "value": f"{(i * 7919 + salt) % 5000}.{(i + salt) % 100:02d}",
            "condition": dict(zip(keys, row[:4], strict=True)),
        }
        for i, row in enumerate(rows)
    ]
    families = {(r[0], r[1], r[3]): set() for r in rows if r[4] == 1}
    for r in con.execute(
        f"SELECT supplier, brand, month, family FROM {SUMMARY} WHERE level = 0"
    ).fetchall():
        families.get(r[:3], set()).add(r[3])
    suppliers = sorted({r[0] for r in rows})
    elsewhere = con.execute(
        f"SELECT supplier, brand, family FROM {SUMMARY} WHERE level = 0 AND month IS NULL "
        "AND supplier NOT IN (SELECT unnest(?)) ORDER BY ALL LIMIT 1",
        [suppliers],
    ).fetchall()
    if hold_elsewhere and elsewhere:  # a hold far from the paste: now every edit counts
        hold = parse_hold({"on": True, "condition": dict(zip(keys, elsewhere[0], strict=False))})
        for w in (writer, twin_writer):
            w.apply([Request(f"{7500 + next(_ids)}-0", hold, "bob")])
    held = con.execute("SELECT count(*) FROM holds").fetchone()[0] > 0
    settled = set()
    for i, row in enumerate(rows):
        later = {
            r[2]
            for r in rows[i + 1 :]
            if r[4] == 0 and (r[0], r[1], r[3]) == (row[0], row[1], row[3])
        }
        if row[4] == 1 and not held and row[5] != 0 and later >= families[(row[0], row[1], row[3])]:
            settled.add(i)
    REPORT[f"paste settled {'some' if settled else 'none'}"] += 1
    before = image(con)
    paste = parse_edit_many({"edits": edits})
    block = writer.apply([Request(f"{8000 + next(_ids)}-0", paste, "ann")])
    kept = [i for i in range(len(edits)) if i not in settled]
    singles = twin_writer.apply(
        [Request(f"{9000 + next(_ids)}-0", parse_edit(edits[i]), "ann") for i in kept]
    )
    statuses = [r["status"] for r in singles["results"]]
    if all(s == "applied" for s in statuses):
        assert block["results"][0]["status"] == "applied"
        assert image(con) == image(twin)
    else:
        assert block["results"][0]["error"]["index"] == kept[statuses.index("rejected")]
        assert image(con) == before
    assert summary_drift(con) == []
    assert footing_errors(con) == []


def _pasted_region(con: duckdb.DuckDBPyConnection, skip: int, salt: int) -> list[dict[str, Any]]:
    """Edits of 60 cells of the expanded grid (brand rows, then their families'),
    values from the salt: from a few cents to past what a row may hold."""
    rows = con.execute(
        f"SELECT supplier, brand, family, month, level FROM {SUMMARY} "
        "WHERE level IN (0, 1) AND month IS NOT NULL"
    ).fetchall()
    keys = ("supplier", "brand", "family", "month")
    scale = 10 ** (salt % 13)
    edits = []
    for i, row in enumerate(sorted(rows, key=_display_order)[skip : skip + 60]):
        base = (i * 7919 + salt) % 5000 * scale
        quantity = (i + salt) % 5 == 0
        edits.append(
            {
                "table": SUMMARY,
                "column": "quantity" if quantity else "net_amount",
                "value": str(base % 10**12) if quantity else f"{base % 10**14}.{i % 100:02d}",
                "condition": dict(zip(keys, row[:4], strict=True)),
            }
        )
    return edits


@settings(
    max_examples=50 if SLOW else 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(collab_operation, min_size=1, max_size=10),
    st.lists(collab_operation, min_size=0, max_size=4),
    st.integers(0, 40),
    st.integers(1, 10**6),
    st.sampled_from([None, 1.0001, 1.001, 1.01, 1.1, 2.0]),
)
def test_a_block_whose_rows_spread_after_its_payload_ends_exactly_the_same(
    fresh, ops, after, skip, salt, headroom
):
    """The writer publishes a block before its rows get their shares (DirectWriter with
    defer, as the writer runs): every decision, cell, row, undo step and history event
    is what deciding it at once gives, whatever comes after it in its batch; only the
    payload's base rows are left to a refetch. `headroom` brings the bound on a block's
    totals (blocks.SUMMARY_CENTS, _QUANTITY) down to just above the data's own
    magnitude, where bounds of deferred rows must give way to their exact values."""
    con, twin = fresh(), fresh()
    limits = blocks.SUMMARY_QUANTITY, blocks.SUMMARY_CENTS
    if headroom is not None:
        quantity, cents = con.execute(
            "SELECT sum(abs(quantity)), sum(abs(net_price)) FROM sales"
        ).fetchone()
        blocks.SUMMARY_QUANTITY = int(float(quantity) * headroom) + 1
        blocks.SUMMARY_CENTS = int(float(cents) * 100 * headroom) + 1
    try:
        _compare_deferring(con, twin, ops, after, skip, salt)
    finally:
        blocks.SUMMARY_QUANTITY, blocks.SUMMARY_CENTS = limits


def _compare_deferring(con, twin, ops, after, skip, salt) -> None:
    deferring, direct = DirectWriter(con, defer=True), DirectWriter(twin)
    history = requests_for(con, ops)
    paste = parse_edit_many({"edits": _pasted_region(con, skip, salt)})
    batches = [
        history,
        [Request(f"{9500 + next(_ids)}-0", paste, "ann")],
        [Request(f"{9600 + next(_ids)}-0", paste, "bob"), *requests_for(con, after)],
        [Request(f"{9700 + next(_ids)}-0", Undo(), "bob")],
    ]
    for batch in batches:
        if not batch:
            continue
        got = deferring.apply(batch)
        want = direct.apply([Request(r.id, r.action, r.user) for r in batch])
        REPORT[f"deferred paste {got['results'][0]['status']}"] += 1
        assert got["results"] == want["results"]
        assert dumps(got["rows"]) == dumps(want["rows"])
        assert dumps(got["base"]) == dumps(want["base"]) or got["base_truncated"]
    assert image(con) == image(twin)
    for table in ("history", "history_cells", "history_rows", "undo_stacks"):
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert con.execute(query).fetchall() == twin.execute(query).fetchall()
    for name in USERS:
        assert deferring.decider.stacks.listing(name) == direct.decider.stacks.listing(name)
    assert_state_matches_database(deferring)
