"""Versions (DESIGN §13) through the writer and persister on real DuckDB files: a copy
(scaled) is exact, edits of one version leave every other alone, locks hold, and
what a restart loads is what was decided."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from itertools import count
from typing import Any

import duckdb
import pytest
from helpers import OUTCOME_REPORTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import SLOW, operation, to_message

from protocol.actions import Undo, versioned
from protocol.catalog import SUMMARY
from protocol.edits import parse_edit, parse_hold
from protocol.errors import ProtocolError
from protocol.versions import CreateVersion, LockVersion
from server.analytics.check import footing_errors, summary_drift
from server.analytics.compare import compare
from server.store.versions import in_version
from server.writer.decide import Request
from server.writer.direct import DirectWriter

_ids = count(20_000)
REPORT: Counter[str] = OUTCOME_REPORTS.setdefault("tests/writer/test_versions.py", Counter())


def request(action: Any, user: str = "ann") -> Request:
    return Request(f"{next(_ids)}-0", action, user)


def outcome(writer: DirectWriter, action: Any, user: str = "ann") -> dict[str, Any]:
    return writer.apply([request(action, user)])["results"][0]


def image(con: duckdb.DuckDBPyConnection, schema: str = "main") -> tuple[list[tuple], ...]:
    return (
        con.execute(f"SELECT * FROM {schema}.sales ORDER BY sale_id").fetchall(),
        con.execute(
            f"SELECT supplier, brand, family, month, level, quantity, net_amount, line_count "
            f"FROM {schema}.{SUMMARY} ORDER BY ALL"
        ).fetchall(),
        con.execute(f"SELECT * EXCLUDE (held_at) FROM {schema}.holds ORDER BY ALL").fetchall(),
    )


def exact(con: duckdb.DuckDBPyConnection, schema: str | None) -> None:
    with in_version(con, schema):
        assert summary_drift(con) == []
        assert footing_errors(con) == []


def brand_cell(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    supplier, brand = con.execute(
        f"SELECT supplier, brand FROM {SUMMARY} WHERE level = 1 AND month = '2024-03' "
        "ORDER BY ALL LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    return {"supplier": supplier, "brand": brand, "month": "2024-03"}


def spread(cell: dict[str, Any], value: str, version: str | None) -> Any:
    message = {"table": SUMMARY, "column": "net_amount", "value": value, "condition": cell}
    if version is not None:
        message["version"] = version
    return versioned(message, parse_edit)


def test_a_copy_scaled_by_a_percent_is_exact_and_leaves_actual_alone(fresh):
    con = fresh()
    writer = DirectWriter(con)
    before = image(con)
    assert outcome(writer, CreateVersion("budget", "actual", "5"))["status"] == "applied"
    scaled = con.execute(
        "SELECT count(*) FROM main.sales a JOIN v1.sales b USING (sale_id) "
        "WHERE b.net_price <> round(a.net_price * 1.05, 2) OR b.quantity <> a.quantity "
        "OR b.invoice_date <> a.invoice_date OR b.product_id <> a.product_id"
    ).fetchone()[0]
    assert scaled == 0
    assert con.execute("SELECT count(*) FROM v1.sales").fetchone() == (
        con.execute("SELECT count(*) FROM main.sales").fetchone()
    )
    assert image(con) == before
    exact(con, "v1")
    # a copy of the copy, as is
    assert outcome(writer, CreateVersion("budget-2", "budget"))["status"] == "applied"
    assert image(con, "v2")[:2] == image(con, "v1")[:2]


def test_creating_a_version_is_refused_clearly_and_changes_nothing(fresh):
    con = fresh()
    writer = DirectWriter(con)
    assert outcome(writer, CreateVersion("budget"))["status"] == "applied"
    schemas = con.execute("SELECT count(*) FROM duckdb_schemas()").fetchone()
    for action, code in [
        (CreateVersion("budget"), "version_exists"),
        (CreateVersion("plan", "forecast"), "unknown_version"),
        (CreateVersion("huge", "actual", "1000"), None),  # in range on the seed data
        (LockVersion("nothing", True), "unknown_version"),
    ]:
        result = outcome(writer, action)
        assert (result.get("error") or {}).get("code") == code, action
    assert con.execute("SELECT count(*) FROM duckdb_schemas()").fetchone()[0] == schemas[0] + 1
    with pytest.raises(ProtocolError):
        CreateVersion.parse({"name": "actual"})
    with pytest.raises(ProtocolError):
        CreateVersion.parse({"name": "Budget 2026"})
    with pytest.raises(ProtocolError):
        CreateVersion.parse({"name": "b", "percent": "-100.5"})


def test_a_version_past_the_range_of_net_price_is_refused(fresh):
    con = fresh()
    con.execute("UPDATE sales SET net_price = 20000000000000 WHERE sale_id = 1")
    writer = DirectWriter(con)
    result = outcome(writer, CreateVersion("big", "actual", "900"))
    assert result["error"]["code"] == "invalid_value"
    assert [r[0] for r in con.execute("SELECT name FROM versions").fetchall()] == ["actual"]
    assert con.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'v1'"
    ).fetchone() == (0,)


def test_edits_of_a_version_change_it_alone_and_undo_in_it(fresh):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget", "actual", "5"))
    actual, copy = image(con), image(con, "v1")
    cell = brand_cell(con)
    payload = writer.apply([request(spread(cell, "1000.00", "budget"))])
    assert payload["results"][0]["status"] == "applied"
    assert payload["version"] == "budget"
    assert image(con) == actual
    budget = con.execute(
        f"SELECT net_amount FROM v1.{SUMMARY} WHERE level = 1 AND supplier = ? AND brand = ? "
        "AND month = ?",
        list(cell.values()),
    ).fetchone()
    assert budget == (Decimal("1000.00"),)
    exact(con, "v1")
    # undo names its version; actual's stack is untouched
    assert outcome(writer, Undo(False))["error"]["code"] == "nothing_to_undo"
    assert outcome(writer, Undo(False, "budget"))["status"] == "applied"
    assert image(con, "v1") == copy  # every row and cell as before the spread
    assert image(con) == actual


def test_a_locked_version_refuses_edits_until_unlocked(fresh):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget"))
    assert outcome(writer, LockVersion("budget", True))["status"] == "applied"
    frozen = image(con, "v1")
    cell = brand_cell(con)
    hold = versioned({"condition": {**cell, "version": "budget"}, "on": True}, parse_hold)
    for action in (spread(cell, "5.00", "budget"), hold, Undo(False, "budget")):
        assert outcome(writer, action)["error"]["code"] == "locked"
    assert image(con, "v1") == frozen
    assert outcome(writer, spread(cell, "5.00", None))["status"] == "applied"  # actual is not
    restarted = DirectWriter(con)  # the lock is persisted
    assert outcome(restarted, spread(cell, "5.00", "budget"))["error"]["code"] == "locked"
    assert outcome(restarted, LockVersion("budget", False))["status"] == "applied"
    assert outcome(restarted, spread(cell, "5.00", "budget"))["status"] == "applied"


def test_unknown_versions_and_condition_edits_of_a_version_are_refused(fresh):
    con = fresh()
    writer = DirectWriter(con)
    before = image(con)
    cell = brand_cell(con)
    assert outcome(writer, spread(cell, "5.00", "nope"))["error"]["code"] == "unknown_version"
    outcome(writer, CreateVersion("budget"))
    by_condition = versioned(
        {
            "table": "sales",
            "column": "quantity",
            "value": 3,
            "condition": {"customer_id": 1, "version": "budget"},
        },
        parse_edit,
    )
    assert outcome(writer, by_condition)["error"]["code"] == "bad_message"
    assert image(con) == before
    with pytest.raises(ProtocolError, match="one version"):
        versioned({**by_condition.as_dict(), "condition": {"version": "x"}}, parse_edit)


def test_moving_a_product_resettles_every_version(fresh):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget", "actual", "3"))
    product, brand = con.execute(
        "SELECT p.product_id, q.brand FROM product p JOIN product q "
        "ON p.supplier = q.supplier AND p.brand <> q.brand ORDER BY ALL LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    move = parse_edit(
        {
            "table": "product",
            "column": "brand",
            "value": brand,
            "condition": {"product_id": product},
        }
    )
    payload = writer.apply([request(move)])
    assert payload["results"][0]["status"] == "applied"
    assert payload["reload"] is True
    exact(con, None)
    exact(con, "v1")


def test_compare_gives_a_b_their_difference_and_ratio(fresh):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget", "actual", "10"))
    cell = brand_cell(con)
    outcome(writer, spread(cell, "0.00", None))  # actual zero: no ratio
    key = {**cell, "level": 1}
    page = compare(con, "budget", "actual", "net_amount", key, 10, 0)
    (row,) = page["rows"]
    assert row["b"] == 0 and row["ratio"] is None and row["diff"] == row["a"]
    total = compare(con, "budget", "actual", "net_amount", {"level": 7, "month": None}, 10, 0)
    (grand,) = total["rows"]
    assert grand["diff"] == grand["a"] - grand["b"]
    assert grand["ratio"] == round((grand["a"] - grand["b"]) / grand["b"], 6)
    with pytest.raises(ProtocolError):
        compare(con, "budget", "nope", "net_amount", {}, 10, 0)


VERSIONS = (None, "budget", "plan", "frozen")


@settings(
    max_examples=40 if SLOW else 10,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(st.sampled_from(VERSIONS), operation), min_size=1, max_size=14))
def test_any_sequence_over_versions_keeps_each_exact_and_the_others_untouched(fresh, ops):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget", "actual", "5"))
    outcome(writer, CreateVersion("plan", "budget", "-2.5"))
    outcome(writer, CreateVersion("frozen", "actual"))
    outcome(writer, LockVersion("frozen", True))
    schemas = {None: "main", "budget": "v1", "plan": "v2", "frozen": "v3"}
    for version, op in ops:
        try:
            kind, message = to_message(con, op)
            if version is not None:
                message["version"] = version
            action = versioned(message, parse_edit if kind == "edit" else parse_hold)
        except ProtocolError:
            continue
        # products are shared: moving one moves every version's facts (resettled)
        shared = getattr(action, "table", None) == "product"
        others = {} if shared else {v: image(con, s) for v, s in schemas.items() if v != version}
        if version == "frozen":  # locked: nothing it names changes it
            others["frozen"] = image(con, "v3")
        result = outcome(writer, action)
        code = result["status"] if result["status"] == "applied" else result["error"]["code"]
        REPORT[f"{version or 'actual'} {code}"] += 1
        if version == "frozen":
            assert code in ("locked", "bad_message"), code
        for other, seen in others.items():
            assert image(con, schemas[other]) == seen, (version, op, other)
    for schema in ("v1", "v2", "v3"):
        exact(con, schema)
    exact(con, None)
    # a restart loads exactly what was decided
    restarted = DirectWriter(con)
    for name in ("actual", "budget", "plan", "frozen"):
        assert restarted.version(name).state.summary == writer.version(name).state.summary


def test_ducksheet_check_checks_every_version(fresh, tmp_path, capsys):
    import argparse
    import shutil

    from server.cli import run_check
    from server.config import Settings

    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget", "actual", "5"))
    con.execute("CHECKPOINT")
    path = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()[0]
    (tmp_path / "data").mkdir()
    shutil.copy(path, tmp_path / "data" / "ducksheet.duckdb")
    settings = Settings(data_dir=tmp_path / "data")
    assert run_check(settings, argparse.Namespace()) == 0
    assert "exact in actual, budget" in capsys.readouterr().out
    with duckdb.connect(str(tmp_path / "data" / "ducksheet.duckdb")) as broken:
        broken.execute(f"UPDATE v1.{SUMMARY} SET net_amount = net_amount + 1 WHERE level = 7")
    assert run_check(settings, argparse.Namespace()) == 1
    assert "(budget)" in capsys.readouterr().out


def test_like_another_version_gives_the_children_that_versions_mix(fresh):
    con = fresh()
    writer = DirectWriter(con)
    outcome(writer, CreateVersion("budget"))
    cell = brand_cell(con)
    families = con.execute(
        f"SELECT family, net_amount FROM {SUMMARY} WHERE level = 0 AND supplier = ? "
        "AND brand = ? AND month = ? ORDER BY family",
        list(cell.values()),
    ).fetchall()
    # budget's mix drifts: its first family doubles
    first = {**cell, "family": families[0][0]}
    outcome(writer, spread(first, str(families[0][1] * 2), "budget"))
    like = versioned(
        {
            "table": SUMMARY,
            "column": "net_amount",
            "value": "10000.00",
            "condition": cell,
            "spread": "like",
            "like": {"version": "actual"},
            "version": "budget",
        },
        parse_edit,
    )
    assert outcome(writer, like)["status"] == "applied"
    got = dict(
        con.execute(
            f"SELECT family, net_amount FROM v1.{SUMMARY} WHERE level = 0 AND supplier = ? "
            "AND brand = ? AND month = ?",
            list(cell.values()),
        ).fetchall()
    )
    total = sum(v for _, v in families)
    assert sum(got.values()) == Decimal("10000.00")
    for family, value in families:  # actual's shares, to the cent
        assert abs(got[family] - Decimal("10000") * value / total) <= Decimal("0.01")
    exact(con, "v1")
    same = versioned({**like.as_dict(), "like": {"version": "budget"}}, parse_edit)
    assert outcome(writer, same)["error"]["code"] == "cannot_spread_like"
    ghost = versioned({**like.as_dict(), "like": {"version": "ghost"}}, parse_edit)
    assert outcome(writer, ghost)["error"]["code"] == "unknown_version"
