"""Small SQL builders. Identifiers come only from the catalog; values are parameters."""

from __future__ import annotations

from typing import Any

from protocol.catalog import Column, Table
from protocol.conditions import (
    WHERE,
    Between,
    Compare,
    Expr,
    In,
    Junction,
    Not,
    parse_text_condition,
)

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
    """`col = ?` / `col IS NULL` joined with AND, or a checked string condition compiled
    to SQL with parameters; columns from the catalog only."""
    prefix = f"{alias}." if alias else ""
    if WHERE in condition:
        params: list[Any] = []
        sql = expr_sql(table, parse_text_condition(table, condition[WHERE]), prefix, params)
        return sql, params
    clauses: list[str] = []
    params = []
    for name, value in condition.items():
        column = table.columns[name]
        if value is None:
            clauses.append(f"{prefix}{ident(name)} IS NULL")
        else:
            clauses.append(f"{prefix}{ident(name)} = {typed_param(column)}")
            params.append(value)
    return (" AND ".join(clauses) or "TRUE"), params


def expr_sql(table: Table, expr: Expr, prefix: str, params: list[Any]) -> str:
    """SQL text for a condition expression; every constant becomes a typed parameter."""

    def column(name: str) -> str:
        return prefix + ident(name)

    def value(name: str, constant: Any) -> str:
        params.append(constant)
        return typed_param(table.columns[name])

    if isinstance(expr, Junction):
        return (
            "(" + f" {expr.op} ".join(expr_sql(table, p, prefix, params) for p in expr.parts) + ")"
        )
    if isinstance(expr, Not):
        return f"(NOT {expr_sql(table, expr.part, prefix, params)})"
    if isinstance(expr, Compare):
        return f"{column(expr.column)} {expr.op} {value(expr.column, expr.value)}"
    if isinstance(expr, In):
        values = ", ".join(value(expr.column, v) for v in expr.values)
        return f"{column(expr.column)} {'NOT IN' if expr.negated else 'IN'} ({values})"
    if isinstance(expr, Between):
        low, high = value(expr.column, expr.low), value(expr.column, expr.high)
        return f"{column(expr.column)} BETWEEN {low} AND {high}"
    return f"{column(expr.column)} IS {'NOT ' if expr.negated else ''}NULL"
