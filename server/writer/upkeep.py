"""Summary upkeep of a barrier transaction: the summary moves by the net change of the
rows in `_before`; and the changed cells as rows to send."""

from __future__ import annotations

from typing import Any

from protocol.catalog import CELL_KEY, SUMMARY
from protocol.rollup import Cell
from server.writer.batch import Batch, Changes, Conn, Measures
from server.writer.before_image import SALES_NODE
from server.writer.ranges import check_query

GROUPING_SETS = """
GROUPING SETS (
    (supplier, brand, family, month), (supplier, brand, family),
    (supplier, brand, month), (supplier, brand),
    (supplier, month), (supplier),
    (month), ()
)"""
SAME_CELL = " AND ".join(f"t.{c} IS NOT DISTINCT FROM d.{c}" for c in CELL_KEY)


# The net change of the rows in `_before`, per summary cell (only cells that change).
NODE_DELTA = f"""
    WITH leaf_delta AS (
        SELECT supplier, brand, family, month, -quantity AS dq, -net_price AS dn, -1 AS dc
        FROM _before
        UNION ALL
        SELECT {SALES_NODE}, 1
        FROM sales s JOIN product p USING (product_id)
        WHERE s.sale_id IN (SELECT sale_id FROM _before)
    )
    SELECT supplier, brand, family, month,
           GROUPING_ID(supplier, brand, family)::INTEGER AS level,
           SUM(dq)::BIGINT AS dq, SUM(dn)::DECIMAL(18, 2) AS dn, SUM(dc)::BIGINT AS dc
    FROM leaf_delta
    GROUP BY {GROUPING_SETS}
    HAVING SUM(dq) <> 0 OR SUM(dn) <> 0 OR SUM(dc) <> 0
"""
CHANGED = """t.supplier, t.brand, t.family, t.month, t.level, t.quantity, t.net_amount,
    t.line_count, t.cell_id"""
MOVE_CELLS = f"""
    MERGE INTO {SUMMARY} t USING ({{source}}) d ON {SAME_CELL}
    WHEN MATCHED AND t.line_count + d.dc = 0 THEN DELETE
    WHEN MATCHED THEN UPDATE SET
        quantity = t.quantity + d.dq,
        net_amount = t.net_amount + d.dn,
        line_count = t.line_count + d.dc
    WHEN NOT MATCHED THEN INSERT
        (supplier, brand, family, month, level, quantity, net_amount, line_count)
        VALUES (d.supplier, d.brand, d.family, d.month, d.level, d.dq, d.dn, d.dc)
    RETURNING {CHANGED}, merge_action
"""
# The largest |quantity| and |net_amount| of the cells MOVE_CELLS would leave.
RANGE_AFTER_MOVE = f"""
    SELECT max(abs(coalesce(t.quantity, 0) + d.dq)), max(abs(coalesce(t.net_amount, 0) + d.dn))
    FROM ({NODE_DELTA}) d LEFT JOIN {SUMMARY} t ON {SAME_CELL}
    WHERE coalesce(t.line_count, 0) + d.dc <> 0
"""


def update_summary(con: Conn, batch: Batch | None = None) -> list[dict[str, Any]]:
    """Move the summary by the net change of the rows in `_before` (then empty it);
    return the cells that changed. `batch` knows whether anything is pending; without
    it DuckDB is asked."""
    changes = batch.changes if batch is not None else Changes()
    if batch is not None:
        pending = batch.before_pending
    else:
        pending = bool(con.execute("SELECT count(*) FROM _before").fetchone()[0])  # type: ignore[index]
    if pending:
        check_query(con, RANGE_AFTER_MOVE)
        returned = con.execute(MOVE_CELLS.format(source=NODE_DELTA)).fetchall()
        changes.add(returned)
        con.execute("DELETE FROM _before")
    if batch is not None:
        batch.before_pending = False
    return ordered(changes)


def ordered(changes: Changes) -> list[dict[str, Any]]:
    """The changed cells as rows to send: by level (grand total first), then node, then
    month (all-months last); a cell that disappeared is sent as `deleted`."""

    def key(cell: Cell) -> tuple[Any, ...]:
        supplier, brand, family, month, level = cell
        return (-level, supplier or "", brand or "", family or "", month is None, month or "")

    def row(cell: Cell, measures: Measures | None) -> dict[str, Any]:
        if measures is None:
            return summary_row((*cell, 0, 0), deleted=True)
        return summary_row((*cell, *measures[:2]))

    changed = changes.changed()
    return [row(cell, changed[cell]) for cell in sorted(changed, key=key)]


def summary_row(
    values: tuple[Any, ...],
    deleted: bool = False,
    changed: tuple[str | None, str | None] | None = None,
) -> dict[str, Any]:
    """A summary cell as clients see it: SUMMARY_COLUMNS (`values`, in that order), its
    table, and `changed` as changed_by, changed_at. Built as one literal: a paste sends
    thousands of them."""
    supplier, brand, family, month, level, quantity, net_amount = values
    row = {
        "supplier": supplier,
        "brand": brand,
        "family": family,
        "month": month,
        "level": level,
        "quantity": 0 if deleted else quantity,
        "net_amount": 0 if deleted else net_amount,
        "table": SUMMARY,
    }
    if deleted:
        row["deleted"] = True
    if changed is not None:
        row["changed_by"], row["changed_at"] = changed
    return row
