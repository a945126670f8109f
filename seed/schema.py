"""The schema, and the tables and views derived from the sales rows (the summary, the
month pivot): what every process that opens the database needs. The seed data itself
(seed/generate.py, with Faker) is needed only on a first start."""

from __future__ import annotations

from importlib.resources import files

import duckdb


def sql_file(name: str) -> str:
    return files("seed").joinpath(name).read_text()


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(sql_file("schema.sql"))
    con.execute(sql_file("views.sql"))


def rebuild_summary(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM sales_summary_by_product_family")
    con.execute(  # every column but cell_id, which its sequence fills
        "INSERT INTO sales_summary_by_product_family (supplier, brand, family, month, "
        "level, quantity, net_amount, line_count) SELECT * FROM sales_summary_fresh"
    )


def create_month_pivot(con: duckdb.DuckDBPyConnection) -> None:
    """Brands by month as columns. DuckDB needs the IN list spelled out in a view, so the
    view is rebuilt from the months present in the data (always 'YYYY-MM' strings)."""
    months = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT month FROM sales_summary_by_product_family "
            "WHERE month IS NOT NULL ORDER BY month"
        ).fetchall()
    ]
    if not months:
        return
    in_list = ", ".join(f"'{m}'" for m in months if len(m) == 7 and m[4] == "-")
    con.execute(
        f"""
        CREATE OR REPLACE VIEW sales_month_pivot AS
        PIVOT (
            SELECT supplier, brand, month, net_amount
            FROM sales_summary_by_product_family
            WHERE level = 1 AND month IS NOT NULL
        )
        ON month IN ({in_list})
        USING sum(net_amount)
        GROUP BY supplier, brand
        ORDER BY supplier, brand
        """
    )
