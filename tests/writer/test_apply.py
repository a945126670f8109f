"""The writer's transaction against a real DuckDB file: edits, spreads, summary upkeep."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest
from helpers import (
    a_brand_month,
    apply,
    assert_exact,
    assert_state_matches_database,
    cell,
    families_of,
    request,
    summary_edit,
)

from protocol.catalog import SUMMARY, SUMMARY_COLUMNS
from server.writer.batch import Limits
from server.writer.before_image import prepare
from server.writer.direct import DirectWriter, apply_batch
from server.writer.state import load
from server.writer.upkeep import summary_row


def test_leaf_edit_updates_sales_and_keeps_summary_exact(con):
    sale_id, quantity = con.execute("SELECT sale_id, quantity FROM sales LIMIT 1").fetchone()
    payload = apply(
        con,
        {
            "table": "sales",
            "column": "quantity",
            "value": quantity + 5,
            "condition": {"sale_id": sale_id},
        },
        {
            "table": "sales",
            "column": "net_price",
            "value": "123.45",
            "condition": {"sale_id": sale_id},
        },
    )
    assert [r["status"] for r in payload["results"]] == ["applied", "applied"]
    assert con.execute(
        "SELECT quantity, net_price FROM sales WHERE sale_id = ?", [sale_id]
    ).fetchone() == (
        quantity + 5,
        Decimal("123.45"),
    )
    assert_exact(con)
    # changed cells at every level reach clients: family..grand total, month and all-months
    assert {row["level"] for row in payload["rows"]} == {0, 1, 3, 7}
    assert {row["month"] is None for row in payload["rows"]} == {True, False}
    assert payload["base"][0]["sale_id"] == sale_id


def test_parent_edit_spreads_proportionally(con):
    supplier, brand, month = a_brand_month(con)
    before = families_of(con, supplier, brand, month)
    old_total = sum(before.values())
    payload = apply(con, summary_edit("5000.00", supplier=supplier, brand=brand, month=month))
    assert payload["results"][0]["status"] == "applied"
    after = families_of(con, supplier, brand, month)
    assert sum(after.values()) == Decimal("5000.00")
    for family, old in before.items():
        expected = old * Decimal(5000) / old_total
        # each family within a cent per sales row below it of its exact proportional share
        rows = con.execute(
            f"SELECT line_count FROM {SUMMARY} WHERE supplier = ? AND brand = ? "
            "AND family = ? AND month = ?",
            [supplier, brand, family, month],
        ).fetchone()[0]
        assert abs(after[family] - expected) <= Decimal("0.01") * rows
    assert_exact(con)


def test_parent_with_all_zero_children_spreads_equally(con):
    supplier, brand, month = a_brand_month(con)
    apply(con, summary_edit(0, supplier=supplier, brand=brand, month=month))
    assert set(families_of(con, supplier, brand, month).values()) == {Decimal("0.00")}
    apply(con, summary_edit("1000.00", supplier=supplier, brand=brand, month=month))
    after = families_of(con, supplier, brand, month)
    assert sum(after.values()) == Decimal("1000.00")
    shares = sorted(after.values())
    assert shares[-1] - shares[0] <= Decimal("0.01")  # equal, to the cent
    assert_exact(con)


def test_quantity_spread_on_all_months_total_is_whole_units(con):
    supplier, brand, _ = a_brand_month(con)
    payload = apply(
        con,
        {
            "table": SUMMARY,
            "column": "quantity",
            "value": 10_001,
            "condition": {"supplier": supplier, "brand": brand},
        },
    )
    assert payload["results"][0]["status"] == "applied"
    assert cell(con, supplier=supplier, brand=brand)[0] == 10_001
    assert_exact(con)


def test_children_summing_to_zero_reject_proportional(con):
    supplier, brand, month = a_brand_month(con)
    families = list(families_of(con, supplier, brand, month))
    apply(
        con,
        summary_edit("100.00", supplier=supplier, brand=brand, family=families[0], month=month),
        summary_edit("-100.00", supplier=supplier, brand=brand, family=families[1], month=month),
        *[
            summary_edit(0, supplier=supplier, brand=brand, family=f, month=month)
            for f in families[2:]
        ],
    )
    payload = apply(con, summary_edit("50.00", supplier=supplier, brand=brand, month=month))
    error = payload["results"][0]["error"]
    assert error["code"] == "cannot_spread_proportionally"
    assert "equal" in error["message"]
    assert cell(con, supplier=supplier, brand=brand, month=month)[1] == Decimal("0.00")


def test_sales_edits_moving_rows_keep_summary_exact(con):
    sale_id = con.execute(
        "SELECT sale_id FROM sales ORDER BY sale_id LIMIT 1 OFFSET 10"
    ).fetchone()[0]
    other_product = con.execute(
        "SELECT max(product_id) FROM product WHERE product_id <> "
        "(SELECT product_id FROM sales WHERE sale_id = ?)",
        [sale_id],
    ).fetchone()[0]
    product_id = con.execute("SELECT min(product_id) FROM product").fetchone()[0]
    payload = apply(
        con,
        {
            "table": "sales",
            "column": "invoice_date",
            "value": "2025-12-31",
            "condition": {"sale_id": sale_id},
        },
        {
            "table": "sales",
            "column": "product_id",
            "value": other_product,
            "condition": {"sale_id": sale_id},
        },
        {
            "table": "product",
            "column": "brand",
            "value": "Brand New",
            "condition": {"product_id": product_id},
        },
        {
            "table": "product",
            "column": "family",
            "value": "fresh",
            "condition": {"product_id": product_id},
        },
    )
    assert [r["status"] for r in payload["results"]] == ["applied"] * 4
    assert_exact(con)
    assert any(row["brand"] == "Brand New" for row in payload["rows"])
    assert (
        con.execute(f"SELECT count(*) FROM {SUMMARY} WHERE brand = 'Brand New'").fetchone()[0] > 0
    )


def test_batch_equals_applying_one_by_one(con, db_path, tmp_path):
    supplier, brand, month = a_brand_month(con)
    sale_id = con.execute(
        "SELECT s.sale_id FROM sales s JOIN product p USING (product_id) WHERE p.supplier = ? "
        "AND p.brand = ? AND strftime(s.invoice_date, '%Y-%m') = ? LIMIT 1",
        [supplier, brand, month],
    ).fetchone()[0]
    messages = [
        summary_edit("7000.00", supplier=supplier, brand=brand, month=month),
        {
            "table": "sales",
            "column": "net_price",
            "value": "1.00",
            "condition": {"sale_id": sale_id},
        },
        summary_edit("9000.00", supplier=supplier, brand=brand, month=month),
        {"table": "sales", "column": "quantity", "value": 3, "condition": {"sale_id": sale_id}},
        summary_edit("1234.56", supplier=supplier),
    ]
    copy = tmp_path / "copy.duckdb"
    con.execute("CHECKPOINT")
    copy.write_bytes(db_path.read_bytes())
    apply(con, *messages)
    with duckdb.connect(str(copy)) as other:
        prepare(other)
        for message in messages:
            apply(other, message)
        query = "SELECT * FROM sales ORDER BY sale_id"
        assert con.execute(query).fetchall() == other.execute(query).fetchall()
        # (cells a batch creates get their cell_id in whatever order it inserts them)
        query = f"SELECT * EXCLUDE (cell_id) FROM {SUMMARY} ORDER BY ALL"
        assert con.execute(query).fetchall() == other.execute(query).fetchall()
    assert cell(con, supplier=supplier)[1] == Decimal("1234.56")
    assert_exact(con)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            {"table": "sales", "column": "quantity", "value": 1, "condition": {"sale_id": -1}},
            "no_rows",
        ),
        (
            {
                "table": "sales",
                "column": "product_id",
                "value": 999_999,
                "condition": {"sale_id": 1},
            },
            "unknown_reference",
        ),
        (summary_edit(10, supplier="No Such Supplier"), "nothing_to_spread"),
        (
            {"table": "sales", "column": "quantity", "value": 1, "condition": {"quantity": 1}},
            "too_many_rows",
        ),
    ],
)
def test_rejected_edits_change_nothing(con, message, code):
    sales = con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall()
    summary = con.execute(f"SELECT * FROM {SUMMARY} ORDER BY ALL").fetchall()
    payload = apply_batch(con, [request(message)], Limits(max_rows_per_edit=10))
    assert payload["results"][0]["status"] == "rejected"
    assert payload["results"][0]["error"]["code"] == code
    assert con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall() == sales
    assert con.execute(f"SELECT * FROM {SUMMARY} ORDER BY ALL").fetchall() == summary


def test_expect_conflict_reports_current_value(con):
    sale_id, price = con.execute("SELECT sale_id, net_price FROM sales LIMIT 1").fetchone()
    edit = {"table": "sales", "column": "net_price", "value": 5, "condition": {"sale_id": sale_id}}
    payload = apply(con, {**edit, "expect": str(price + 1)})
    assert payload["results"][0]["error"]["code"] == "conflict"
    assert payload["results"][0]["error"]["current"] == str(price)
    payload = apply(con, {**edit, "expect": str(price)})
    assert payload["results"][0]["status"] == "applied"


def test_batch_records_outcomes_and_last_applied(con):
    payload = apply(
        con,
        {"table": "sales", "column": "quantity", "value": 2, "condition": {"sale_id": 1}},
        {"table": "sales", "column": "quantity", "value": 2, "condition": {"sale_id": -9}},
    )
    seq = payload["seq"]
    assert con.execute("SELECT last_id FROM _applied").fetchone()[0] == seq
    statuses = con.execute(
        "SELECT status, code FROM request_log WHERE seq = ? ORDER BY request_id", [seq]
    ).fetchall()
    assert statuses == [("applied", None), ("rejected", "no_rows")]
    # interactive results are published before they are persisted: no outbox row
    assert con.execute("SELECT count(*) FROM _outbox").fetchone()[0] == 0


def test_string_condition_edit_updates_exactly_the_matching_rows(con):
    condition = "quantity BETWEEN 2 AND 3 AND customer_id IN (1, 2, 3)"
    before = dict(con.execute("SELECT sale_id, quantity FROM sales").fetchall())
    expected = {
        r[0] for r in con.execute(f"SELECT sale_id FROM sales WHERE {condition}").fetchall()
    }
    assert expected
    payload = apply(
        con, {"table": "sales", "column": "quantity", "value": 11, "condition": condition}
    )
    assert payload["results"][0]["status"] == "applied"
    after = dict(con.execute("SELECT sale_id, quantity FROM sales").fetchall())
    assert {sale for sale in after if after[sale] != before[sale]} == expected
    assert all(after[sale] == 11 for sale in expected)
    assert_exact(con)


def test_the_writers_copy_of_the_summary_follows_new_and_emptied_cells(con):
    """Cells a batch creates or empties are created and dropped in the working state
    and in DuckDB alike; later batches move the new cells."""
    writer = DirectWriter(con)
    sale_id, date = con.execute("SELECT sale_id, invoice_date FROM sales LIMIT 1").fetchone()

    def edit(column: str, value: object) -> dict:
        message = {"table": "sales", "column": column, "value": value}
        message["condition"] = {"sale_id": sale_id}
        payload = writer.apply([request(message)])
        assert payload["results"][0]["status"] == "applied"
        assert_exact(con)
        assert_state_matches_database(writer)
        return payload

    created = edit("invoice_date", "2031-01-15")  # a month no sale is in yet
    assert {row["month"] for row in created["rows"]} >= {"2031-01"}
    edit("quantity", 777)  # moves the new cells
    emptied = edit("invoice_date", date.isoformat())
    assert [r for r in emptied["rows"] if r["month"] == "2031-01"]
    assert all(r.get("deleted") for r in emptied["rows"] if r["month"] == "2031-01")
    assert not [cell for cell in writer.decider.state.summary if cell[3] == "2031-01"]


def test_spreads_moving_more_than_float64_holds_exactly_stay_exact(con):
    """A brand-month set to 10^14 and back moves its cells by more than 2^52 cents, past
    what the float64 sums by node and cell hold exactly: the exact path decides them."""
    supplier, brand, month = a_brand_month(con)
    for value in ("100000000000000.01", "12.34"):
        payload = apply(con, summary_edit(value, supplier=supplier, brand=brand, month=month))
        assert payload["results"][0]["status"] == "applied", payload["results"][0]
        assert cell(con, supplier=supplier, brand=brand, month=month)[1] == Decimal(value)
        assert_exact(con)


def test_the_largest_amounts_load_back(con):
    """A sales row and a summary cell past 10^14 (DECIMAL(18, 2) * 100 would overflow)
    are read back into the writer's state when it starts."""
    sale_id = con.execute("SELECT min(sale_id) FROM sales").fetchone()[0]
    edit = {"table": "sales", "column": "net_price", "condition": {"sale_id": sale_id}}
    apply(con, {**edit, "value": "99999999999999.99"})  # the column's largest
    state = load(con)
    assert int(state.sales.cents[state.sales.position(sale_id)]) == 9_999_999_999_999_999
    assert max(value[1] for value in state.summary.values()) >= 9_999_999_999_999_999


def test_a_summary_row_carries_the_catalogs_columns_in_order():
    """summary_row spells SUMMARY_COLUMNS out (one literal, for speed): held to them."""
    row = summary_row(tuple(range(7)), changed=("ann", "2026-12-07T00:00:00.000Z"))
    assert list(row) == [*SUMMARY_COLUMNS, "table", "changed_by", "changed_at"]
    assert list(row.values())[:7] == list(range(7))
    gone = summary_row(tuple(range(7)), deleted=True)
    assert gone["quantity"] == gone["net_amount"] == 0 and gone["deleted"] is True
