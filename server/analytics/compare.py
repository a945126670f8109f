"""Reads across versions (DESIGN §13): the versions there are, and the variance of two
versions cell by cell: a, b, a - b and (a - b) / b (null where b is zero)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import duckdb

from protocol.catalog import CELL_KEY, SUMMARY, TABLES
from protocol.codec import NO_SEQ
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL
from server.store.sql import where
from server.store.versions import in_version, read_versions

Conn = duckdb.DuckDBPyConnection
T = TypeVar("T")
MEASURES = ("net_amount", "quantity")
COMPARE_COLUMNS = (*CELL_KEY, "a", "b", "diff", "ratio")


def versions(cur: Conn) -> list[dict[str, Any]]:
    return [v.as_dict() for v in read_versions(cur).values()]


def schema_of(cur: Conn, name: str) -> str:
    """The schema holding a version's tables ("main" for actual)."""
    found = read_versions(cur).get(name)
    if found is None:
        raise ProtocolError("unknown_version", f"there is no version {name!r}")
    return found.schema or "main"


def in_named_version(cur: Conn, version: str, read: Callable[..., T], *args: Any) -> T:
    """`read(cur, *args)` with the tables of `version` (actual: as is)."""
    if version == ACTUAL:
        return read(cur, *args)
    with in_version(cur, schema_of(cur, version)):
        return read(cur, *args)


def compare(
    cur: Conn,
    a: str,
    b: str,
    measure: str,
    condition: dict[str, Any],
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """One page of cells of version a against version b, in the summary's order."""
    if measure not in MEASURES:
        raise ProtocolError("unknown_column", f"compare takes {' or '.join(MEASURES)}")
    cur.execute("BEGIN TRANSACTION")
    try:
        left, right = schema_of(cur, a), schema_of(cur, b)
        clause, params = where(TABLES[SUMMARY], condition)
        keys = ", ".join(f"coalesce(x.{c}, y.{c}) AS {c}" for c in CELL_KEY)
        same = " AND ".join(f"x.{c} IS NOT DISTINCT FROM y.{c}" for c in CELL_KEY)
        joined = f"""
            WITH j AS (
                SELECT {keys}, coalesce(x.{measure}, 0) AS a, coalesce(y.{measure}, 0) AS b
                FROM {left}.{SUMMARY} x FULL JOIN {right}.{SUMMARY} y ON {same}
            )
            SELECT *, a - b AS diff,
                   CASE WHEN b = 0 THEN NULL ELSE round((a - b) / b, 6) END AS ratio
            FROM j WHERE {clause}
        """
        total = cur.execute(f"SELECT count(*) FROM ({joined})", params).fetchone()[0]  # type: ignore[index]
        rows = cur.execute(
            f"{joined} ORDER BY level DESC, supplier NULLS FIRST, brand NULLS FIRST, "
            "family NULLS FIRST, month NULLS LAST LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        seq_row = cur.execute("SELECT last_id FROM _applied").fetchone()
    finally:
        cur.execute("COMMIT")
    return {
        "a": a,
        "b": b,
        "measure": measure,
        "columns": list(COMPARE_COLUMNS),
        "rows": [_row(row) for row in rows],
        "total": total,
        "seq": seq_row[0] if seq_row else NO_SEQ,
    }


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(COMPARE_COLUMNS, values, strict=True))
    if isinstance(row["ratio"], float):
        row["ratio"] = Decimal(repr(row["ratio"]))
    return row
