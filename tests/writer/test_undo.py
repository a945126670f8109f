"""Block edits, undo and redo, decided in memory and persisted (DESIGN §12)."""

from __future__ import annotations

import shutil
from itertools import count
from typing import Any

import duckdb
import numpy as np
from helpers import a_brand_month, assert_exact, assert_state_matches_database, summary_edit

from protocol.actions import Undo
from protocol.catalog import SUMMARY
from protocol.edits import parse_edit, parse_edit_many, parse_hold
from server.writer import changes
from server.writer.batch import Limits
from server.writer.decide import Request
from server.writer.direct import DirectWriter

_ids = count(1)


def rid() -> str:
    return f"2000-{next(_ids)}"


def edit(message: dict[str, Any], user: str = "ann") -> Request:
    return Request(rid(), parse_edit(message), user)


def block(messages: list[dict[str, Any]], user: str = "ann") -> Request:
    return Request(rid(), parse_edit_many({"edits": messages}), user)


def undo(user: str = "ann", redo: bool = False) -> Request:
    return Request(rid(), Undo(redo), user)


def hold(user: str = "ann", **condition: Any) -> Request:
    return Request(rid(), parse_hold({"condition": condition, "on": True}), user)


def result(writer: DirectWriter, request: Request) -> dict[str, Any]:
    return writer.apply([request])["results"][0]


def code(res: dict[str, Any]) -> str:
    return res["status"] if res["status"] == "applied" else res["error"]["code"]


def image(con) -> tuple[list[tuple], list[tuple]]:
    """Every sales row and summary cell, to compare the database before and after."""
    sales = con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall()
    cells = con.execute(
        f"SELECT supplier, brand, family, month, level, quantity, net_amount, line_count "
        f"FROM {SUMMARY} ORDER BY ALL"
    ).fetchall()
    return sales, cells


def family_months(con, supplier: str, brand: str, month: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            f"SELECT family FROM {SUMMARY} WHERE level = 0 AND supplier = ? AND brand = ? "
            "AND month = ? ORDER BY family",
            [supplier, brand, month],
        ).fetchall()
    ]


def test_a_block_applies_every_edit_as_one_request(con):
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    families = family_months(con, supplier, brand, month)
    edits = [
        summary_edit(f"{1000 + i}.25", supplier=supplier, brand=brand, family=f, month=month)
        for i, f in enumerate(families)
    ]
    res = result(writer, block(edits))
    assert code(res) == "applied"
    for i, family in enumerate(families):
        value = con.execute(
            f"SELECT net_amount FROM {SUMMARY} WHERE level = 0 AND supplier = ? AND brand = ? "
            "AND family = ? AND month = ?",
            [supplier, brand, family, month],
        ).fetchone()[0]
        assert str(value) == f"{1000 + i}.25"
    events = con.execute("SELECT action, cells > 0, rows > 0 FROM history").fetchall()
    assert events == [("edit_many", True, True)]
    assert_exact(con)
    assert_state_matches_database(writer)


def test_a_block_with_a_failing_edit_changes_nothing_and_names_its_index(con):
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    first, second = family_months(con, supplier, brand, month)[:2]
    writer.apply([hold("bob", supplier=supplier, brand=brand, family=second, month=month)])
    before = image(con)
    sale_id = con.execute("SELECT min(sale_id) FROM sales").fetchone()[0]
    edits = [
        summary_edit("5.00", supplier=supplier, brand=brand, family=first, month=month),
        {"table": "sales", "column": "quantity", "value": 7, "condition": {"sale_id": sale_id}},
        summary_edit("6.00", supplier=supplier, brand=brand, family=second, month=month),
    ]
    res = result(writer, block(edits))
    assert code(res) == "held" and res["error"]["index"] == 2
    assert res["error"]["message"].startswith("edit 2: ")
    assert image(con) == before
    assert_state_matches_database(writer)
    assert code(result(writer, undo())) == "nothing_to_undo"


def test_undo_right_after_a_spread_restores_every_row_and_cell(con):
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    before = image(con)
    assert (
        code(result(writer, edit(summary_edit("0", supplier=supplier, brand=brand, month=month))))
        == "applied"
    )
    assert (
        code(
            result(
                writer, edit(summary_edit("100.00", supplier=supplier, brand=brand, month=month))
            )
        )
        == "applied"
    )
    assert code(result(writer, undo())) == "applied"
    assert code(result(writer, undo())) == "applied"
    assert image(con) == before  # the mix is back, not an equal spread
    assert_state_matches_database(writer)
    assert code(result(writer, undo())) == "nothing_to_undo"
    assert code(result(writer, undo(redo=True))) == "applied"
    zeroed = con.execute(
        f"SELECT net_amount FROM {SUMMARY} WHERE level = 1 AND supplier = ? AND brand = ? "
        "AND month = ?",
        [supplier, brand, month],
    ).fetchone()[0]
    assert zeroed == 0
    actions = [r[0] for r in con.execute("SELECT action FROM history ORDER BY ord").fetchall()]
    assert actions == ["spread", "spread", "undo", "undo", "redo"]
    assert_exact(con)


def test_undo_is_refused_when_someone_changed_its_rows_since(con):
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    family = family_months(con, supplier, brand, month)[0]
    cell = {"supplier": supplier, "brand": brand, "month": month}
    writer.apply([edit(summary_edit("500.00", **cell))])
    writer.apply([edit(summary_edit("20.00", **cell, family=family), "bob")])
    before = image(con)
    res = result(writer, undo())
    assert code(res) == "undo_conflict"
    assert res["error"]["by"] == ["bob"]
    named = res["error"]["cells"]
    assert {(c["family"], c["month"], c["by"]) for c in named} == {(family, month, "bob")}
    assert "bob" in res["error"]["message"]
    assert image(con) == before
    # once bob undid his edit, ann's undo goes through
    assert code(result(writer, undo("bob"))) == "applied"
    assert code(result(writer, undo())) == "applied"
    assert_exact(con)


def test_an_edit_elsewhere_by_another_user_does_not_block_undo(con):
    writer = DirectWriter(con, Limits())
    low, high = con.execute("SELECT min(sale_id), max(sale_id) FROM sales").fetchone()
    before = con.execute("SELECT quantity FROM sales WHERE sale_id = ?", [low]).fetchone()[0]
    quantity = lambda sale_id, value: {  # noqa: E731
        "table": "sales",
        "column": "quantity",
        "value": value,
        "condition": {"sale_id": sale_id},
    }
    writer.apply([edit(quantity(low, before + 3))])
    writer.apply([edit(quantity(high, 1), "bob")])
    assert code(result(writer, undo())) == "applied"
    assert (
        con.execute("SELECT quantity FROM sales WHERE sale_id = ?", [low]).fetchone()[0] == before
    )
    assert con.execute("SELECT quantity FROM sales WHERE sale_id = ?", [high]).fetchone()[0] == 1
    assert_exact(con)


def test_undo_of_a_move_to_another_product_and_a_held_target(con):
    writer = DirectWriter(con, Limits())
    sale_id, product = con.execute(
        "SELECT sale_id, product_id FROM sales ORDER BY sale_id LIMIT 1"
    ).fetchone()
    other = con.execute(
        "SELECT product_id FROM product WHERE family <> (SELECT family FROM product "
        "WHERE product_id = ?) LIMIT 1",
        [product],
    ).fetchone()[0]
    before = image(con)
    move = {
        "table": "sales",
        "column": "product_id",
        "value": other,
        "condition": {"sale_id": sale_id},
    }
    assert code(result(writer, edit(move))) == "applied"
    assert code(result(writer, undo())) == "applied"
    assert image(con) == before
    assert code(result(writer, undo(redo=True))) == "applied"
    supplier, brand, family = con.execute(
        "SELECT supplier, brand, family FROM product WHERE product_id = ?", [product]
    ).fetchone()
    writer.apply([hold("bob", supplier=supplier, brand=brand, family=family)])
    assert code(result(writer, undo())) == "held"
    assert_exact(con)
    assert_state_matches_database(writer)


def test_a_new_edit_clears_redo_and_stacks_survive_a_restart(con):
    writer = DirectWriter(con, Limits(undo_depth=3))
    sale_id = con.execute("SELECT min(sale_id) FROM sales").fetchone()[0]
    original = con.execute("SELECT quantity FROM sales WHERE sale_id = ?", [sale_id]).fetchone()[0]
    for value in (11, 12, 13, 14):
        writer.apply(
            [
                edit(
                    {
                        "table": "sales",
                        "column": "quantity",
                        "value": value,
                        "condition": {"sale_id": sale_id},
                    }
                )
            ]
        )
    writer.apply([undo()])
    restarted = DirectWriter(con, Limits(undo_depth=3))
    assert code(result(restarted, undo(redo=True))) == "applied"  # 14 again
    for _ in range(3):
        assert code(result(restarted, undo())) == "applied"
    assert code(result(restarted, undo())) == "nothing_to_undo"  # only 3 deep
    assert (
        con.execute("SELECT quantity FROM sales WHERE sale_id = ?", [sale_id]).fetchone()[0] == 11
    )
    restarted.apply(
        [
            edit(
                {
                    "table": "sales",
                    "column": "quantity",
                    "value": original,
                    "condition": {"sale_id": sale_id},
                }
            )
        ]
    )
    assert code(result(restarted, undo(redo=True))) == "nothing_to_redo"
    assert_state_matches_database(restarted)


def test_a_pasted_block_spreads_around_holds_exactly_like_single_edits(con, db_path, tmp_path):
    """Brand-month cells of one block go through the vectorized path; a held family
    below one of them keeps its rows, as it does for the same edits one by one."""
    twin_path = tmp_path / "twin.duckdb"
    shutil.copy(db_path, twin_path)
    twin = duckdb.connect(str(twin_path))
    supplier, brand, month = a_brand_month(con)
    family = family_months(con, supplier, brand, month)[0]
    months = [
        r[0]
        for r in con.execute(
            f"SELECT month FROM {SUMMARY} WHERE level = 1 AND supplier = ? AND brand = ? "
            "AND month IS NOT NULL AND month <> ? ORDER BY month LIMIT 3",
            [supplier, brand, month],
        ).fetchall()
    ]
    months.insert(1, month)  # the held family's month, amid others
    edits = [
        summary_edit(f"{2000 + 10 * i}.00", supplier=supplier, brand=brand, month=m)
        for i, m in enumerate(months)
    ]
    results = []
    for database, requests in ((con, [block(edits)]), (twin, [edit(e) for e in edits])):
        writer = DirectWriter(database, Limits())
        writer.apply([hold("bob", supplier=supplier, brand=brand, family=family, month=month)])
        results.append(writer.apply(requests)["results"])
    assert [r["status"] for r in results[0] + results[1]] == ["applied"] * (1 + len(edits))
    assert image(con) == image(twin)
    assert_exact(con)
    twin.close()


def test_the_stacks_keep_within_their_memory_budget(con):
    writer = DirectWriter(con, Limits())
    writer.decider.stacks.max_values = 3
    low = con.execute("SELECT min(sale_id) FROM sales").fetchone()[0]
    for i, user in enumerate(["ann", "ann", "bob", "ann", "bob"]):
        writer.apply(
            [
                edit(
                    {
                        "table": "sales",
                        "column": "quantity",
                        "value": 40 + i,
                        "condition": {"sale_id": low + i},
                    },
                    user,
                )
            ]
        )
    stacks = writer.decider.stacks
    assert stacks.total == 3 == sum(s.values for s in stacks.users.values())
    assert [len(stacks.users[u].done) for u in ("ann", "bob")] == [2, 1]  # tie: later name
    restarted = DirectWriter(con, Limits())
    assert restarted.decider.stacks.listing("ann") == stacks.listing("ann")
    assert restarted.decider.stacks.total == 3


def test_steps_keep_32_bit_values_compact_and_larger_ones_exact(con, monkeypatch):
    """A step holds int32 columns where its values fit (half the memory), int64 where a
    spread gives rows more than 21,474,836.47: undo brings both back exactly. (Steps of
    fewer than COMPACT_FROM rows stay as they are; lowered here for the test's small
    cells.)"""
    monkeypatch.setattr(changes, "COMPACT_FROM", 1)
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    cell = {"supplier": supplier, "brand": brand, "month": month}
    before = image(con)
    for value in ("100.00", "900000000000.00"):  # the second: rows far past 2**31 cents
        assert code(result(writer, edit(summary_edit(value, **cell)))) == "applied"
    small, large = list(writer.decider.stacks.stack("ann").done)
    assert small.rows["net_price"].after.dtype == np.int32
    assert large.rows["net_price"].after.dtype == np.int64
    assert large.rows["net_price"].before.dtype == np.int32  # what it replaced was small
    assert code(result(writer, undo())) == "applied"
    assert code(result(writer, undo())) == "applied"
    assert image(con) == before
    assert_state_matches_database(writer)


def test_stacked_steps_keep_the_rows_undo_needs_and_leave_the_cells_to_history(con):
    """A step on the undo stack holds the rows it changed, not its cells (a paste's
    thousands of them would stay as objects for the garbage collector to walk); the
    cells are in history."""
    writer = DirectWriter(con, Limits())
    supplier, brand, month = a_brand_month(con)
    cell = {"supplier": supplier, "brand": brand, "month": month}
    assert code(result(writer, edit(summary_edit("100.00", **cell)))) == "applied"
    (step,) = writer.decider.stacks.stack("ann").done
    assert len(step.rows["net_price"].sale_ids) > 1 and step.cells == {}
    query = "SELECT count(*) FROM history_cells WHERE request = ?"
    assert con.execute(query, [step.request]).fetchone()[0] > 1
    assert code(result(writer, undo())) == "applied"
