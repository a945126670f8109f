"""Consistency checks of the materialized summary (`ducksheet check`, tests)."""

from __future__ import annotations

from typing import Any

import duckdb

from protocol.catalog import SUMMARY, SUMMARY_COLUMNS

COLUMNS = ", ".join((*SUMMARY_COLUMNS, "line_count"))


def summary_drift(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[tuple[Any, ...]]:
    """Rows that differ between the summary table and a fresh GROUPING SETS query,
    each tagged 'table' or 'fresh' by the side it appears on."""
    return con.execute(
        f"""
        (SELECT 'table' AS side, * FROM (
            SELECT {COLUMNS} FROM {SUMMARY} EXCEPT ALL SELECT {COLUMNS} FROM sales_summary_fresh))
        UNION ALL
        (SELECT 'fresh' AS side, * FROM (
            SELECT {COLUMNS} FROM sales_summary_fresh EXCEPT ALL SELECT {COLUMNS} FROM {SUMMARY}))
        LIMIT ?
        """,
        [limit],
    ).fetchall()


def footing_errors(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[tuple[Any, ...]]:
    """Parents whose measures are not exactly the sum of their children's: each node
    against its children one level down, and each all-months total against its months."""
    return con.execute(
        f"""
        WITH s AS (SELECT * FROM {SUMMARY}),
        by_parent AS (
            SELECT
                CASE WHEN c.level IN (0, 1) THEN c.supplier END AS supplier,
                CASE WHEN c.level = 0 THEN c.brand END AS brand,
                NULL::VARCHAR AS family,
                c.month,
                CASE c.level WHEN 0 THEN 1 WHEN 1 THEN 3 WHEN 3 THEN 7 END AS level,
                SUM(c.quantity) AS quantity, SUM(c.net_amount) AS net_amount
            FROM s c WHERE c.level < 7
            GROUP BY ALL
            UNION ALL
            SELECT supplier, brand, family, NULL, level, SUM(quantity), SUM(net_amount)
            FROM s WHERE month IS NOT NULL
            GROUP BY ALL
        )
        SELECT b.*, p.quantity AS parent_quantity, p.net_amount AS parent_net_amount
        FROM by_parent b
        LEFT JOIN s p
          ON p.supplier IS NOT DISTINCT FROM b.supplier AND p.brand IS NOT DISTINCT FROM b.brand
         AND p.family IS NOT DISTINCT FROM b.family AND p.month IS NOT DISTINCT FROM b.month
         AND p.level = b.level
        WHERE p.quantity IS DISTINCT FROM b.quantity OR p.net_amount IS DISTINCT FROM b.net_amount
        LIMIT ?
        """,
        [limit],
    ).fetchall()
