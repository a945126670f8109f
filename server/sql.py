"""Small SQL builders. Identifiers come only from the catalog; values are parameters."""

from __future__ import annotations

from typing import Any

from protocol.catalog import Column, Table

_SQL_TYPES = {
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "decimal": "DECIMAL(18, 2)",
    "date": "DATE",
    "varchar": "VARCHAR",
    "month": "VARCHAR",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def typed_param(column: Column) -> str:
    return cast_sql(column, "?")


def cast_sql(column: Column, expression: str) -> str:
    return f"CAST({expression} AS {_SQL_TYPES[column.type]})"


def where(table: Table, condition: dict[str, Any], alias: str = "") -> tuple[str, list[Any]]:
    """`col = ?` / `col IS NULL` joined with AND, for catalog columns only."""
    prefix = f"{alias}." if alias else ""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in condition.items():
        column = table.columns[name]
        if value is None:
            clauses.append(f"{prefix}{ident(name)} IS NULL")
        else:
            clauses.append(f"{prefix}{ident(name)} = {typed_param(column)}")
            params.append(value)
    return (" AND ".join(clauses) or "TRUE"), params
