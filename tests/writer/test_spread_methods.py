"""Spreading methods beyond proportional and equal (DESIGN §13), decided in memory."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from helpers import a_brand_month, assert_exact, cell, families_of, request, summary_edit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.actions import Undo
from protocol.catalog import SUMMARY
from protocol.edits import parse_edit_many, parse_hold
from protocol.spread import percent_target
from server.writer.batch import Limits
from server.writer.decide import Request
from server.writer.direct import DirectWriter


def percent(value: Any, **condition: Any) -> dict[str, Any]:
    return {**summary_edit(value, **condition), "spread": "percent"}


def code(payload: dict[str, Any]) -> str:
    result = payload["results"][0]
    return result["status"] if result["status"] == "applied" else result["error"]["code"]


def sales(con) -> list[tuple]:
    return con.execute("SELECT sale_id, quantity, net_price FROM sales ORDER BY ALL").fetchall()


def cents(amount: Decimal) -> int:
    return int(amount * 100)


def hold_cell(writer: DirectWriter, **condition: Any) -> None:
    hold = parse_hold({"condition": condition, "on": True})
    writer.apply([Request(request(summary_edit(0)).id, hold, "ann")])


def undo(writer: DirectWriter) -> str:
    return code(writer.apply([Request(request(summary_edit(0)).id, Undo(False), "ann")]))


def test_percent_is_a_proportional_spread_to_the_changed_value(fresh):
    by_percent, by_value = fresh(), fresh()
    supplier, brand, month = a_brand_month(by_percent)
    where = {"supplier": supplier, "brand": brand, "month": month}
    _, before = cell(by_percent, **where)
    target = Decimal(percent_target(cents(before), "7.5")) / 100

    payload = DirectWriter(by_percent, Limits()).apply([request(percent("7.5", **where))])
    assert code(payload) == "applied"
    DirectWriter(by_value, Limits()).apply([request(summary_edit(str(target), **where))])

    assert cell(by_percent, **where)[1] == target
    assert sales(by_percent) == sales(by_value)
    assert_exact(by_percent)


def test_percent_leaves_held_children_alone_and_moves_the_rest(fresh):
    con = fresh()
    supplier, brand, month = a_brand_month(con)
    where = {"supplier": supplier, "brand": brand, "month": month}
    families = families_of(con, supplier, brand, month)
    kept = next(iter(families))
    writer = DirectWriter(con, Limits())
    hold_cell(writer, **where, family=kept)
    _, before = cell(con, **where)

    assert code(writer.apply([request(percent(10, **where))])) == "applied"

    after = families_of(con, supplier, brand, month)
    assert after[kept] == families[kept]
    assert cell(con, **where)[1] == Decimal(percent_target(cents(before), "10")) / 100
    assert_exact(con)


def test_minus_100_percent_empties_a_cell_and_a_zero_cell_stays_zero(fresh):
    con = fresh()
    supplier, brand, month = a_brand_month(con)
    where = {"supplier": supplier, "brand": brand, "month": month}
    writer = DirectWriter(con, Limits())
    assert code(writer.apply([request(percent(-100, **where))])) == "applied"
    assert cell(con, **where)[1] == 0
    assert code(writer.apply([request(percent(50, **where))])) == "applied"
    assert cell(con, **where)[1] == 0
    assert_exact(con)


def test_a_percent_spread_of_a_held_cell_is_refused(fresh):
    con = fresh()
    supplier, brand, month = a_brand_month(con)
    where = {"supplier": supplier, "brand": brand, "month": month}
    writer = DirectWriter(con, Limits())
    hold_cell(writer, **where)
    before = sales(con)
    assert code(writer.apply([request(percent(5, **where))])) == "held"
    assert sales(con) == before


def test_a_percent_spread_is_undone_exactly(fresh):
    con = fresh()
    supplier, brand, month = a_brand_month(con)
    where = {"supplier": supplier, "brand": brand, "month": month}
    writer = DirectWriter(con, Limits())
    before = sales(con)
    assert code(writer.apply([request(percent("-12.5", **where))])) == "applied"
    assert undo(writer) == "applied"
    assert sales(con) == before
    assert_exact(con)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    level=st.sampled_from(["total", "supplier", "brand", "family"]),
    all_months=st.booleans(),
    change=st.decimals(min_value=-100, max_value=300, places=2, allow_nan=False),
    column=st.sampled_from(["net_amount", "quantity"]),
)
def test_any_percent_lands_on_the_changed_value_and_keeps_everything_exact(
    fresh, level, all_months, change, column
):
    con = fresh()
    supplier, brand, family, month = con.execute(
        f"SELECT supplier, brand, family, month FROM {SUMMARY} WHERE level = 0 "
        "AND month IS NOT NULL ORDER BY line_count DESC, supplier, brand, family, month LIMIT 1"
    ).fetchone()
    depth = ["total", "supplier", "brand", "family"].index(level)
    where = dict(list({"supplier": supplier, "brand": brand, "family": family}.items())[:depth])
    if not all_months:
        where["month"] = month
    quantity, amount = cell(con, **where)
    before = cents(amount) if column == "net_amount" else quantity
    message = {**percent(str(change), **where), "column": column}
    payload = DirectWriter(con, Limits()).apply([request(message)])
    after_quantity, after_amount = cell(con, **where)
    after = cents(after_amount) if column == "net_amount" else after_quantity
    assert code(payload) == "applied"
    assert after == percent_target(before, str(change))
    assert_exact(con)


def like(value: Any, reference: str, **condition: Any) -> dict[str, Any]:
    return {**summary_edit(value, **condition), "spread": "like", "like": {"period": reference}}


def a_brand_with_two_months(con) -> tuple[str, str, str, str]:
    """A brand and two of its months whose families all have sales in both."""
    return con.execute(
        f"""
        WITH m AS (
            SELECT supplier, brand, month, count(*) AS families, min(net_amount) AS least
            FROM {SUMMARY} WHERE level = 0 AND month IS NOT NULL GROUP BY ALL
        )
        SELECT a.supplier, a.brand, a.month, b.month FROM m a JOIN m b
            ON a.supplier = b.supplier AND a.brand = b.brand AND a.month > b.month
            AND a.families = b.families
        WHERE a.families >= 2 AND a.least > 0 AND b.least > 0
        ORDER BY a.families DESC, a.supplier, a.brand, a.month, b.month LIMIT 1
        """
    ).fetchone()


def test_like_gives_a_brand_month_the_families_mix_of_another_month(fresh):
    con = fresh()
    supplier, brand, month, reference = a_brand_with_two_months(con)
    mix = families_of(con, supplier, brand, reference)
    assert set(mix) == set(families_of(con, supplier, brand, month))
    payload = DirectWriter(con, Limits()).apply(
        [request(like("50000.00", reference, supplier=supplier, brand=brand, month=month))]
    )
    assert code(payload) == "applied"
    after = families_of(con, supplier, brand, month)
    assert sum(after.values()) == Decimal("50000.00")
    total = sum(mix.values())
    for family, value in after.items():  # the reference's shares, to the cent
        assert abs(value - Decimal("50000.00") * mix[family] / total) <= Decimal("0.01")
    assert families_of(con, supplier, brand, reference) == mix  # the reference is unchanged
    assert_exact(con)


def test_like_refuses_what_has_no_mix_and_changes_nothing(fresh):
    con = fresh()
    supplier, brand, month, reference = a_brand_with_two_months(con)
    family = next(iter(families_of(con, supplier, brand, month)))
    writer = DirectWriter(con, Limits())
    before = sales(con)
    empty_month = "1999-01"  # no sales then: every child of the reference is zero
    for message in (
        like(100, empty_month, supplier=supplier, brand=brand, month=month),
        like(100, reference, supplier=supplier, brand=brand, family=family, month=month),
    ):
        assert code(writer.apply([request(message)])) == "cannot_spread_like"
    assert sales(con) == before


def test_like_is_undone_exactly_and_respects_holds(fresh):
    con = fresh()
    supplier, brand, month, reference = a_brand_with_two_months(con)
    families = families_of(con, supplier, brand, month)
    kept = next(iter(families))
    writer = DirectWriter(con, Limits())
    hold_cell(writer, supplier=supplier, brand=brand, family=kept, month=month)
    before = sales(con)
    where = {"supplier": supplier, "brand": brand, "month": month}
    assert code(writer.apply([request(like("12345.67", reference, **where))])) == "applied"
    after = families_of(con, supplier, brand, month)
    assert after[kept] == families[kept] and sum(after.values()) == Decimal("12345.67")
    assert undo(writer) == "applied"
    assert sales(con) == before
    assert_exact(con)


def months_of(con, supplier: str, brand: str) -> dict[str, Decimal]:
    return dict(
        con.execute(
            f"SELECT month, net_amount FROM {SUMMARY} WHERE level = 1 AND supplier = ? "
            "AND brand = ? AND month IS NOT NULL ORDER BY month",
            [supplier, brand],
        ).fetchall()
    )


def test_a_quarter_spreads_over_its_months_and_no_others(fresh):
    con = fresh()
    supplier, brand, _ = a_brand_month(con)
    before = months_of(con, supplier, brand)
    year = min(before)[:4]
    quarter = {f"{year}-{m:02d}" for m in (4, 5, 6)} & set(before)
    assert quarter, "the seed has no Q2 months for this brand"
    where = {"supplier": supplier, "brand": brand, "period": f"{year}-Q2"}
    payload = DirectWriter(con, Limits()).apply([request(summary_edit("77777.77", **where))])
    assert code(payload) == "applied"
    after = months_of(con, supplier, brand)
    assert sum(after[m] for m in quarter) == Decimal("77777.77")
    assert {m: v for m, v in after.items() if m not in quarter} == {
        m: v for m, v in before.items() if m not in quarter
    }
    shares = {m: before[m] / sum(before[m] for m in quarter) for m in quarter}
    for month in quarter:  # proportionally to the months' values, to the cent
        assert abs(after[month] - Decimal("77777.77") * shares[month]) <= Decimal("0.01")
    assert_exact(con)


def test_a_year_changes_by_a_percent_and_a_block_of_quarters_applies(fresh):
    con = fresh()
    supplier, brand, _ = a_brand_month(con)
    before = months_of(con, supplier, brand)
    year = min(before)[:4]
    in_year = [m for m in before if m.startswith(year)]
    total = sum(before[m] for m in in_year)
    writer = DirectWriter(con, Limits())
    where = {"supplier": supplier, "brand": brand, "period": year}
    assert code(writer.apply([request(percent(10, **where))])) == "applied"
    expected = Decimal(percent_target(cents(total), "10")) / 100
    assert sum(months_of(con, supplier, brand)[m] for m in in_year) == expected

    quarters = [f"{year}-Q{q}" for q in (1, 2, 3, 4)]
    edits = [
        summary_edit(f"{1000 * q}.00", supplier=supplier, brand=brand, period=p)
        for q, p in enumerate(quarters, 1)
    ]
    payload = writer.apply(
        [Request(request(summary_edit(0)).id, parse_edit_many({"edits": edits}), "ann")]
    )
    assert code(payload) == "applied"
    after = months_of(con, supplier, brand)
    for q in (1, 2, 3, 4):
        months = [f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
        assert sum(after.get(m, 0) for m in months) == Decimal(1000 * q)
    assert_exact(con)


def test_a_year_spread_like_last_year_takes_its_months_mix(fresh):
    con = fresh()
    supplier, brand, _ = a_brand_month(con)
    before = months_of(con, supplier, brand)
    last = {m[5:]: v for m, v in before.items() if m.startswith("2024")}
    where = {"supplier": supplier, "brand": brand, "period": "2025"}
    payload = DirectWriter(con, Limits()).apply([request(like("120000.00", "2024", **where))])
    assert code(payload) == "applied"
    after = months_of(con, supplier, brand)
    this_year = {m[5:]: v for m, v in after.items() if m.startswith("2025")}
    assert sum(this_year.values()) == Decimal("120000.00")
    total = sum(last.get(month, 0) for month in this_year)
    for month, value in this_year.items():  # January like January (none: 0), to the cent
        share = Decimal("120000.00") * last.get(month, 0) / total
        assert abs(value - share) <= Decimal("0.01")
    assert {m: v for m, v in after.items() if m.startswith("2024")} == {
        m: v for m, v in before.items() if m.startswith("2024")
    }
    assert_exact(con)


def test_a_quarter_spread_like_another_quarter(fresh):
    con = fresh()
    supplier, brand, _ = a_brand_month(con)
    writer = DirectWriter(con, Limits())
    where = {"supplier": supplier, "brand": brand, "period": "2025-Q3"}
    assert code(writer.apply([request(like("9000.00", "2024-Q3", **where))])) == "applied"
    after = months_of(con, supplier, brand)
    assert sum(after.get(m, 0) for m in ("2025-07", "2025-08", "2025-09")) == Decimal("9000.00")
    assert_exact(con)
