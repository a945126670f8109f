"""Reading the validation log of an import: the problems `mode=validate` recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # IN_RESPONSE is read by web processes, which have no DuckDB
    import duckdb

COLUMNS = ("row_number", "column_name", "value", "reason")
IN_RESPONSE = 100  # problems an import's answer carries; the rest are paged over REST


def problems(
    cur: duckdb.DuckDBPyConnection, import_id: str, limit: int, offset: int = 0
) -> dict[str, Any]:
    """{import_id, file_name, total, columns, problems: [{row_number, …}]}, in row order."""
    total, file_name = cur.execute(
        "SELECT count(*), any_value(file_name) FROM validation_logs WHERE import_id = ?",
        [import_id],
    ).fetchone()  # type: ignore[misc]
    rows = cur.execute(
        "SELECT row_number, column_name, value, reason FROM validation_logs "
        "WHERE import_id = ? ORDER BY row_number, column_name NULLS FIRST, reason "
        "LIMIT ? OFFSET ?",
        [import_id, limit, offset],
    ).fetchall()
    return {
        "import_id": import_id,
        "file_name": file_name,
        "total": total,
        "columns": list(COLUMNS),
        "problems": [dict(zip(COLUMNS, row, strict=True)) for row in rows],
    }
