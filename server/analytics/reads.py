"""Read-side queries: snapshots and table pages. They run on reader cursors and see
one committed snapshot each, together with the seq it reflects."""

from __future__ import annotations

from typing import Any

import duckdb

from protocol.catalog import SUMMARY, SUMMARY_COLUMNS, TABLES
from protocol.codec import NO_SEQ
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL
from server.analytics.compare import schema_of
from server.store.sql import ident, where
from server.store.versions import in_version
from server.writer.holds import current_holds
from server.writer.upkeep import summary_row

Conn = duckdb.DuckDBPyConnection


def _seq(cur: Conn) -> str:
    row = cur.execute("SELECT last_id FROM _applied").fetchone()
    return row[0] if row else NO_SEQ


def snapshot(cur: Conn, version: str = ACTUAL) -> dict[str, Any]:
    """All summary rows of a version, its holds and the exact seq they reflect, from
    one transaction."""
    cur.execute("BEGIN TRANSACTION")
    try:
        seq = _seq(cur)
        with in_version(cur, None if version == ACTUAL else schema_of(cur, version)):
            rows = cur.execute(
                f"SELECT {', '.join(SUMMARY_COLUMNS)}, changed_by, changed_at FROM {SUMMARY} "
                "ORDER BY level DESC, supplier, brand, family, month NULLS LAST"
            ).fetchall()
            holds = current_holds(cur)
    finally:
        cur.execute("COMMIT")
    out = {"seq": seq, "rows": [_snapshot_row(row) for row in rows], "holds": holds}
    return out if version == ACTUAL else {**out, "version": version}


def _snapshot_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """A summary row with who last changed it and when (ISO-8601 UTC), as updates carry."""
    by, at = values[-2:]
    stamp = None if at is None else at.isoformat(timespec="milliseconds") + "Z"
    return summary_row(values[:-2], changed=(by, stamp))


def view_table(
    cur: Conn,
    table_name: str,
    condition: dict[str, Any],
    order: list[tuple[str, bool]],
    limit: int,
    offset: int,
    version: str = ACTUAL,
) -> dict[str, Any]:
    """A page of a table (of `version`: its sales and summary; the dimensions are
    shared) and the seq it reflects."""
    table = TABLES.get(table_name)
    if table is None:
        raise ProtocolError("unknown_table", f"unknown table {table_name!r}")
    clause, params = where(table, condition)
    order_sql = ", ".join(f"{ident(c)} {'DESC' if desc else 'ASC'} NULLS LAST" for c, desc in order)
    order_sql = order_sql or ", ".join(ident(c) for c in table.key)
    columns = list(table.columns)
    cur.execute("BEGIN TRANSACTION")
    try:
        seq = _seq(cur)
        schema = None if version == ACTUAL else schema_of(cur, version)
        with in_version(cur, schema):
            total = cur.execute(
                f"SELECT count(*) FROM {ident(table.name)} WHERE {clause}", params
            ).fetchone()[0]  # type: ignore[index]
            rows = cur.execute(
                f"SELECT {', '.join(ident(c) for c in columns)} FROM {ident(table.name)} "
                f"WHERE {clause} ORDER BY {order_sql} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
    finally:
        cur.execute("COMMIT")
    return {
        "table": table.name,
        "version": version,
        "columns": columns,
        "rows": [dict(zip(columns, row, strict=True)) for row in rows],
        "total": total,
        "seq": seq,
    }


def request_status(cur: Conn, request_id: str) -> dict[str, Any] | None:
    row = cur.execute(
        "SELECT status, code, message, seq FROM request_log WHERE request_id = ?", [request_id]
    ).fetchone()
    if row is None:
        return None
    status, code, message, seq = row
    out: dict[str, Any] = {"request_id": request_id, "status": status, "seq": seq}
    if code:
        out["error"] = {"code": code, "message": message}
    return out
