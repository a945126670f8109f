"""What the edits of one writer transaction share: limits, the before-image of the
sales rows they change, and what to tell clients afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

Conn = duckdb.DuckDBPyConnection

# A sales row's summary node and measures, from `sales s JOIN product p`.
SALES_NODE = """
    p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month,
    s.quantity, s.net_price
"""


@dataclass
class Limits:
    max_rows_per_edit: int = 10_000
    base_rows_broadcast: int = 200


@dataclass
class Batch:
    limits: Limits
    has_holds: bool = False
    base_keys: dict[str, set[Any]] = field(default_factory=dict)  # changed product/customer keys
    holds: list[dict[str, Any]] = field(default_factory=list)  # holds set or released


def prepare(con: Conn) -> None:
    """Session temp tables used by every batch (the writer's connection only)."""
    con.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS _before (
            sale_id BIGINT, supplier VARCHAR, brand VARCHAR, family VARCHAR, month VARCHAR,
            quantity INTEGER, net_price DECIMAL(18, 2)
        )"""
    )


def capture_before(con: Conn, predicate: str, params: list[Any]) -> None:
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
