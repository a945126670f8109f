"""Holds: held cells keep their value through spreads and base edits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from helpers import (
    Client,
    a_brand_month,
    apply,
    assert_exact,
    cell,
    families_of,
    read,
    request,
    summary_edit,
)

from protocol.catalog import SUMMARY
from protocol.edits import parse_hold
from server.writer.batch import Limits
from server.writer.decide import Request
from server.writer.direct import apply_batch


def hold(con, user: str = "ann", on: bool = True, **condition: Any) -> dict[str, Any]:
    req = Request(request(summary_edit(0)).id, parse_hold({"condition": condition, "on": on}), user)
    return apply_batch(con, [req], Limits())


def outcome(payload: dict[str, Any]) -> str:
    result = payload["results"][0]
    return result["status"] if result["status"] == "applied" else result["error"]["code"]


def apply_one(con, message: dict[str, Any]) -> dict[str, Any]:
    return apply_batch(con, [request(message)], Limits())


def test_spread_leaves_held_family_untouched(con):
    supplier, brand, month = a_brand_month(con)
    families = families_of(con, supplier, brand, month)
    kept = next(iter(families))
    payload = hold(con, supplier=supplier, brand=brand, family=kept, month=month)
    assert payload["holds"] == [
        {
            "supplier": supplier,
            "brand": brand,
            "family": kept,
            "month": month,
            "level": 0,
            "on": True,
            "by": "ann",
        }
    ]
    assert (
        outcome(
            apply_one(con, summary_edit("90000.00", supplier=supplier, brand=brand, month=month))
        )
        == "applied"
    )
    after = families_of(con, supplier, brand, month)
    assert after[kept] == families[kept]
    assert sum(after.values()) == Decimal("90000.00")
    assert_exact(con)


def test_held_cell_cannot_be_edited_and_all_held_is_rejected(con):
    supplier, brand, month = a_brand_month(con)
    hold(con, supplier=supplier, brand=brand, month=month)
    assert (
        outcome(apply_one(con, summary_edit(1, supplier=supplier, brand=brand, month=month)))
        == "held"
    )
    for family in families_of(con, supplier, brand, month):
        target = summary_edit(5, supplier=supplier, brand=brand, family=family, month=month)
        assert outcome(apply_one(con, target)) == "all_held"
    hold(con, on=False, supplier=supplier, brand=brand, month=month)
    assert (
        outcome(apply_one(con, summary_edit(1, supplier=supplier, brand=brand, month=month)))
        == "applied"
    )


def test_hold_above_the_edited_cell_keeps_its_total(con):
    supplier, brand, month = a_brand_month(con)
    supplier_month = cell(con, supplier=supplier, month=month)
    hold(con, supplier=supplier, month=month)
    # the brand's all-months total may change, but not in the held supplier-month
    assert (
        outcome(apply_one(con, summary_edit("123456.78", supplier=supplier, brand=brand)))
        == "applied"
    )
    assert cell(con, supplier=supplier, month=month) == supplier_month
    assert cell(con, supplier=supplier, brand=brand)[1] == Decimal("123456.78")
    assert_exact(con)


def test_base_edits_under_a_hold_are_rejected(con):
    supplier, brand, month = a_brand_month(con)
    hold(con, supplier=supplier, brand=brand, month=month)
    sale_id, product_id = con.execute(
        "SELECT s.sale_id, s.product_id FROM sales s JOIN product p USING (product_id) "
        "WHERE p.supplier = ? AND p.brand = ? AND strftime(s.invoice_date, '%Y-%m') = ? LIMIT 1",
        [supplier, brand, month],
    ).fetchone()

    def a_sale(where: str, *params: Any) -> int:
        return con.execute(
            "SELECT s.sale_id FROM sales s JOIN product p USING (product_id) "
            f"WHERE {where} ORDER BY s.sale_id LIMIT 1",
            list(params),
        ).fetchone()[0]

    month_of = "strftime(s.invoice_date, '%Y-%m')"
    same_brand_other_month = a_sale(f"p.brand = ? AND {month_of} <> ?", brand, month)
    other_brand_same_month = a_sale(f"p.brand <> ? AND {month_of} = ?", brand, month)
    elsewhere = a_sale(f"p.brand <> ? AND {month_of} <> ?", brand, month)
    edits = [
        {"table": "sales", "column": "quantity", "value": 99, "condition": {"sale_id": sale_id}},
        {
            "table": "sales",
            "column": "invoice_date",
            "value": f"{month}-02",
            "condition": {"sale_id": same_brand_other_month},
        },
        {
            "table": "sales",
            "column": "product_id",
            "value": product_id,
            "condition": {"sale_id": other_brand_same_month},
        },
        {"table": "sales", "column": "customer_id", "value": 1, "condition": {"sale_id": sale_id}},
        {"table": "sales", "column": "quantity", "value": 99, "condition": {"sale_id": elsewhere}},
    ]
    payload = apply_batch(con, [request(e) for e in edits], Limits())
    codes = [
        r["status"] if r["status"] == "applied" else r["error"]["code"] for r in payload["results"]
    ]
    assert codes == ["held", "held", "held", "applied", "applied"]
    # moving a product with sales in the held cell out of its brand is refused too
    reparent = {
        "table": "product",
        "column": "brand",
        "value": "Elsewhere",
        "condition": {"product_id": product_id},
    }
    assert outcome(apply_one(con, reparent)) == "held"
    assert_exact(con)


def test_hold_of_a_missing_cell_is_rejected(con):
    assert outcome(hold(con, supplier="Nobody")) == "no_rows"
    assert con.execute("SELECT count(*) FROM holds").fetchone()[0] == 0


async def test_holds_are_shared_live_and_listed(server):
    ann = await Client.connect(server, "ann")
    bob = await Client.connect(server, "bob")
    await ann.next("snapshot")
    assert (await bob.next("snapshot"))["holds"] == []
    supplier, brand = (
        await read(server, f"SELECT supplier, brand FROM {SUMMARY} WHERE level = 1 LIMIT 1")
    )[0]
    condition = {"supplier": supplier, "brand": brand, "month": "2024-02"}
    await ann.send({"type": "hold", "id": "h1", "condition": condition, "on": True})
    held = await ann.next("applied", id="h1")
    update = await bob.next("updates")
    assert update["holds"][0] | {"on": True, "by": "ann"} == update["holds"][0]
    await bob.edit("e", table=SUMMARY, column="net_amount", value=5, condition=condition)
    assert (await bob.next("rejected", id="e"))["error"]["code"] == "held"
    async with server.client() as http:
        # read-your-writes: DuckDB holds what was published only once persisted
        listed = (await http.get("/holds", params={"min_seq": held["seq"]})).json()["data"]["holds"]
        assert [(h["brand"], h["month"], h["by"]) for h in listed] == [(brand, "2024-02", "ann")]
        refused = await http.post(  # REST is not ann: only the holder releases
            "/holds?wait=5", json={"data": {"condition": condition, "on": False}}
        )
        assert refused.json()["error"]["code"] == "forbidden"
    await ann.send({"type": "hold", "id": "h2", "condition": condition, "on": False})
    applied = await ann.next("applied", id="h2")
    async with server.client() as http:
        listed = await http.get("/holds", params={"min_seq": applied["seq"]})
        assert listed.json()["data"]["holds"] == []
    carol = await Client.connect(server, "carol")
    assert (await carol.next("snapshot"))["holds"] == []
    for client in (ann, bob, carol):
        await client.close()


async def test_presence_shows_who_is_where(server):
    ann = await Client.connect(server, "ann")
    bob = await Client.connect(server, "bob")
    await ann.next("snapshot")
    await bob.next("snapshot")
    cell_ = {"supplier": "S", "brand": "B", "family": None, "month": "2024-01"}
    await ann.send({"type": "cursor", "cell": cell_})
    seen = await bob.next("presence")
    assert seen["name"] == "ann" and seen["cell"] == cell_
    carol = await Client.connect(server, "carol")
    welcome = await carol.next("welcome")
    assert [(p["name"], p["cell"]) for p in welcome["presence"]] == [("ann", cell_)]
    await ann.close()
    gone = await bob.next("presence")
    assert gone["name"] == "ann" and gone["gone"] is True
    await bob.close()
    await carol.close()


def test_a_later_edit_of_the_same_row_is_judged_where_the_earlier_one_moved_it(con):
    # one batch moves a sale to another brand, then into the month held there
    sale_id, product, year, month = con.execute(
        "SELECT s.sale_id, s.product_id, year(s.invoice_date), month(s.invoice_date) "
        "FROM sales s ORDER BY sale_id LIMIT 1"
    ).fetchone()
    other_month = f"{year:04d}-{(month % 12) + 1:02d}"
    (brand,) = con.execute("SELECT brand FROM product WHERE product_id = ?", [product]).fetchone()
    target, target_supplier, target_brand = con.execute(
        "SELECT product_id, supplier, brand FROM product WHERE brand <> ? ORDER BY 1 LIMIT 1",
        [brand],
    ).fetchone()
    held = {"supplier": target_supplier, "brand": target_brand, "month": other_month}
    assert outcome(hold(con, **held)) == "applied"
    before = cell(con, **held)
    move = {"table": "sales", "column": "product_id", "value": target}
    into_held = {"table": "sales", "column": "invoice_date", "value": f"{other_month}-15"}
    payload = apply(
        con, *({**edit, "condition": {"sale_id": sale_id}} for edit in (move, into_held))
    )
    assert [r["status"] for r in payload["results"]] == ["applied", "rejected"]
    assert payload["results"][1]["error"]["code"] == "held"
    assert cell(con, **held) == before
    assert_exact(con)
