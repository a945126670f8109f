"""Edits of the base tables (sales, product, customer)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from protocol.catalog import HIERARCHY, Table
from protocol.edits import Edit
from protocol.errors import ProtocolError
from server.store.sql import cast_sql, ident, where
from server.writer.batch import Batch, Conn
from server.writer.before_image import capture_before
from server.writer.holds import product_edit_hits_holds, sales_edits_hitting_holds

# Base-table columns whose change moves amounts between summary nodes.
SUMMARY_INPUTS = {
    "sales": {"invoice_date", "product_id", "quantity", "net_price"},
    "product": set(HIERARCHY),
}
HELD = "the change would alter a held cell; release the hold first"


def apply_base_edit(con: Conn, table: Table, edit: Edit, batch: Batch) -> None:
    """An UPDATE of the rows a condition matches (capped), after every check passed."""
    key = table.key[0]
    clause, params = where(table, edit.condition)
    keys = [
        row[0]
        for row in con.execute(
            f"SELECT {ident(key)} FROM {ident(table.name)} WHERE {clause} ORDER BY 1 LIMIT ?",
            [*params, batch.limits.max_rows_per_edit + 1],
        ).fetchall()
    ]
    if not keys:
        raise ProtocolError("no_rows", f"no row of {table.name!r} matches the condition")
    if len(keys) > batch.limits.max_rows_per_edit:
        raise ProtocolError(
            "too_many_rows",
            f"the condition matches more than {batch.limits.max_rows_per_edit} rows of "
            f"{table.name!r}; narrow it",
        )
    if edit.expect is not None:
        _check_expect(con, table, edit, keys)
    _check_reference(con, edit)
    moves_amounts = edit.column in SUMMARY_INPUTS.get(table.name, ())
    if moves_amounts and batch.has_holds and _hits_holds(con, table, edit, keys):
        raise ProtocolError("held", HELD)
    if table.name == "sales":
        capture_before(con, "s.sale_id IN (SELECT unnest(?::BIGINT[]))", [keys], batch)
    else:
        batch.base_keys.setdefault(table.name, set()).update(keys)
        if moves_amounts:
            capture_before(con, "s.product_id IN (SELECT unnest(?::INTEGER[]))", [keys], batch)
    set_values(con, table, edit.column, keys, [edit.value] * len(keys))


def _hits_holds(con: Conn, table: Table, edit: Edit, keys: list[Any]) -> bool:
    if table.name == "product":
        return product_edit_hits_holds(con, keys, edit.column, str(edit.value))
    count = len(keys)
    return bool(
        sales_edits_hitting_holds(
            con, list(range(count)), keys, [edit.column] * count, [str(edit.value)] * count
        )
    )


def _check_expect(con: Conn, table: Table, edit: Edit, keys: list[Any]) -> None:
    if len(keys) != 1:
        raise ProtocolError(
            "bad_condition", "'expect' needs a condition that matches exactly one row"
        )
    current = con.execute(
        f"SELECT {ident(edit.column)} FROM {ident(table.name)} WHERE {ident(table.key[0])} = ?",
        [keys[0]],
    ).fetchone()[0]  # type: ignore[index]
    if _normalize(current) != _normalize(edit.expect):
        raise ProtocolError(
            "conflict",
            f"{edit.column} is {_normalize(current)}, not the expected {edit.expect}",
            current=_normalize(current),
        )


def _normalize(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _check_reference(con: Conn, edit: Edit) -> None:
    if edit.table != "sales" or edit.column not in ("product_id", "customer_id"):
        return
    target = "product" if edit.column == "product_id" else "customer"
    if not existing_keys(con, target, edit.column, [edit.value]):
        raise ProtocolError(
            "unknown_reference", f"there is no {target} with {edit.column} {edit.value}"
        )


def existing_keys(con: Conn, table: str, column: str, values: list[Any]) -> set[Any]:
    """Which of the integer `values` exist in table.column."""
    if not values:
        return set()
    rows = con.execute(
        f"SELECT {ident(column)} FROM {ident(table)} "
        f"WHERE {ident(column)} IN (SELECT unnest(?::BIGINT[]))",
        [sorted(set(values))],
    ).fetchall()
    return {row[0] for row in rows}


def set_values(con: Conn, table: Table, column: str, keys: list[Any], values: list[Any]) -> None:
    """UPDATE table SET column = value per key, in one statement."""
    key = table.key[0]
    if len(keys) == 1:  # by the primary-key index, without a join
        value = cast_sql(table.columns[column], "?::VARCHAR")
        con.execute(
            f"UPDATE {ident(table.name)} SET {ident(column)} = {value} WHERE {ident(key)} = ?",
            [str(values[0]), keys[0]],
        )
        return
    value = cast_sql(table.columns[column], "v.value")
    con.execute(
        f"""
        UPDATE {ident(table.name)} SET {ident(column)} = {value}
        FROM (SELECT unnest(?) AS k, unnest(?::VARCHAR[]) AS value) v
        WHERE {ident(table.name)}.{ident(key)} = v.k
        """,
        [keys, [str(value) for value in values]],
    )
