"""Holds: summary cells whose value edits must not change.

Every sales row below a held cell is frozen: spreads leave it alone and base edits
that would change it (or move rows into the held cell) are rejected with `held`.
That keeps every held cell's value fixed whatever its relation to the edited cell.
"""

from __future__ import annotations

from typing import Any

from protocol.catalog import CELL_COORDINATES, HIERARCHY
from server.writer.batch import Conn

# A hold `h` covers a node `n` when every column it names matches.
COVERS = " AND ".join(f"(h.{c} IS NULL OR h.{c} = n.{c})" for c in CELL_COORDINATES)


def has_holds(con: Conn) -> bool:
    return bool(con.execute("SELECT count(*) FROM holds").fetchone()[0])  # type: ignore[index]


def current_holds(con: Conn) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT supplier, brand, family, month, level, held_by FROM holds "
        "ORDER BY level DESC, supplier, brand, family, month NULLS LAST"
    ).fetchall()
    return [
        {**dict(zip((*CELL_COORDINATES, "level"), row[:5], strict=True)), "by": row[5]}
        for row in rows
    ]


def sales_edits_hitting_holds(
    con: Conn, indexes: list[int], sale_ids: list[int], columns: list[str], values: list[str]
) -> set[int]:
    """Which edits (by index) would change a held cell: the row's node now, and the node a
    new invoice_date or product_id would move it to. Judged on the state before the run."""
    rows = con.execute(
        f"""
        WITH e AS (
            SELECT unnest($idx) AS idx, unnest($ids::BIGINT[]) AS sale_id,
                   unnest($cols) AS col, unnest($vals) AS val
        ),
        cur AS (
            SELECT e.idx, e.col, e.val, s.invoice_date, p.supplier, p.brand, p.family
            FROM e JOIN sales s USING (sale_id) JOIN product p USING (product_id)
        ),
        n AS (
            SELECT idx, supplier, brand, family, strftime(invoice_date, '%Y-%m') AS month
            FROM cur
            UNION ALL
            SELECT idx, supplier, brand, family, strftime(TRY_CAST(val AS DATE), '%Y-%m')
            FROM cur WHERE col = 'invoice_date'
            UNION ALL
            SELECT c.idx, p.supplier, p.brand, p.family, strftime(c.invoice_date, '%Y-%m')
            FROM cur c JOIN product p ON p.product_id = TRY_CAST(c.val AS INTEGER)
            WHERE c.col = 'product_id'
        )
        SELECT DISTINCT n.idx FROM n JOIN holds h ON {COVERS}
        """,
        {"idx": indexes, "ids": sale_ids, "cols": columns, "vals": values},
    ).fetchall()
    return {row[0] for row in rows}


def product_edit_hits_holds(con: Conn, product_ids: list[int], column: str, value: str) -> bool:
    """Would re-parenting these products change a held cell (old node or new node)?"""
    moved = {c: ("?::VARCHAR" if c == column else f"p.{c}") for c in HIERARCHY}
    found = con.execute(
        f"""
        WITH rows AS (
            SELECT p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month,
                   {moved["supplier"]} AS new_supplier, {moved["brand"]} AS new_brand,
                   {moved["family"]} AS new_family
            FROM product p JOIN sales s USING (product_id)
            WHERE p.product_id IN (SELECT unnest(?::INTEGER[]))
        ),
        n AS (
            SELECT supplier, brand, family, month FROM rows
            UNION ALL
            SELECT new_supplier, new_brand, new_family, month FROM rows
        )
        SELECT count(*) FROM n JOIN holds h ON {COVERS}
        """,
        [value, product_ids] if column in HIERARCHY else [product_ids],
    ).fetchone()[0]  # type: ignore[index]
    return bool(found)
