"""The before-image of sales rows that change in ways the writer does not settle at once
(condition edits, re-parenting, date moves): their old node and measures, kept in the
session table `_before` until the batch's summary upkeep moves the summary by
(after - before)."""

from __future__ import annotations

from typing import Any

from server.writer.batch import Batch, Conn

# A sales row's summary node and measures, from `sales s JOIN product p`.
SALES_NODE = """
    p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month,
    s.quantity, s.net_price
"""


def prepare(con: Conn) -> None:
    """Session temp tables used by every batch (the writer's connection only)."""
    con.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS _before (
            sale_id BIGINT, supplier VARCHAR, brand VARCHAR, family VARCHAR, month VARCHAR,
            quantity INTEGER, net_price DECIMAL(18, 2)
        )"""
    )


def capture_before(
    con: Conn, predicate: str, params: list[Any], batch: Batch | None = None
) -> None:
    """Remember the old node and measures of sales rows about to change (first time only).
    The summary is later moved by (after - before) of exactly these rows."""
    con.execute(
        f"""
        INSERT INTO _before
        SELECT s.sale_id, {SALES_NODE}
        FROM sales s JOIN product p USING (product_id)
        WHERE ({predicate}) AND s.sale_id NOT IN (SELECT sale_id FROM _before)
        """,
        params,
    )
    if batch is not None:
        batch.before_pending = True
