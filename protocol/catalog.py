"""The tables clients may read and edit, their columns and types.

Identifiers in SQL come only from here; nothing a client sends is spliced into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUMMARY = "sales_summary_by_product_family"
HIERARCHY = ("supplier", "brand", "family")
# A summary cell is named by its node and month (NULL: all months), plus its level.
CELL_COORDINATES = (*HIERARCHY, "month")
CELL_KEY = (*CELL_COORDINATES, "level")
SUMMARY_COLUMNS = (*CELL_KEY, "quantity", "net_amount")  # a summary row as clients see it
# GROUPING_ID(supplier, brand, family) of each node depth.
LEVEL_FAMILY, LEVEL_BRAND, LEVEL_SUPPLIER, LEVEL_TOTAL = 0, 1, 3, 7


@dataclass(frozen=True, eq=False)  # each is one catalog entry: identity is equality, and
class Column:  # hashing by identity is cheap (checks cache by column, 10,000 times a block)
    name: str
    type: str  # integer | bigint | decimal | date | varchar | month
    editable: bool = False
    scale: int = 0  # decimal places for `decimal`
    precision: int = 18  # digits of a `decimal` (DuckDB DECIMAL(precision, scale))
    max_abs: int = 10**15  # bound on the magnitude of numeric values
    min_value: int | None = None  # lower bound of values written (quantities: 0)


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: dict[str, Column] = field(default_factory=dict)
    summary: bool = False

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)


def _table(name: str, key: tuple[str, ...], *columns: Column, summary: bool = False) -> Table:
    return Table(name, key, {c.name: c for c in columns}, summary)


EXPORT_FORMATS = ("csv", "parquet", "xlsx")  # GET /export/{table}?format= and `ducksheet export`

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _table(
            "product",
            ("product_id",),
            Column("product_id", "integer"),
            Column("product_name", "varchar", editable=True),
            Column("supplier", "varchar", editable=True),
            Column("brand", "varchar", editable=True),
            Column("family", "varchar", editable=True),
            Column("unit_price", "decimal", editable=True, scale=2, precision=12, max_abs=10**10),
        ),
        _table(
            "customer",
            ("customer_id",),
            Column("customer_id", "integer"),
            Column("customer_name", "varchar", editable=True),
            Column("email", "varchar", editable=True),
            Column("region", "varchar", editable=True),
            Column("segment", "varchar", editable=True),
        ),
        _table(
            "sales",
            ("sale_id",),
            Column("sale_id", "bigint"),
            Column("invoice_date", "date", editable=True),
            Column("product_id", "integer", editable=True, max_abs=2**31 - 1),
            Column("customer_id", "integer", editable=True, max_abs=2**31 - 1),
            Column("quantity", "integer", editable=True, max_abs=10**9, min_value=0),
            Column("net_price", "decimal", editable=True, scale=2, max_abs=10**14),
        ),
        _table(
            SUMMARY,
            CELL_KEY,
            Column("supplier", "varchar"),
            Column("brand", "varchar"),
            Column("family", "varchar"),
            Column("month", "month"),
            Column("level", "integer"),
            Column("quantity", "bigint", editable=True, max_abs=10**12, min_value=0),
            Column("net_amount", "decimal", editable=True, scale=2, max_abs=10**15),
            Column("line_count", "bigint"),
            summary=True,
        ),
    )
}
