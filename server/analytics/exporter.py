"""Table export (DESIGN §5): DuckDB `COPY ... TO` a CSV or Parquet file, or an xlsx
workbook (server.analytics.xlsx_export), served or written by the CLI. CSV text that a
spreadsheet application would run as a formula is made inert (server.analytics.cells).

The server exports on a reader cursor (a committed snapshot; the writer is never
blocked) into a temporary file under `<data_dir>/exports/`, streams it and deletes it.
`ducksheet export` opens the database file itself, read-only, so it works only while
the server is stopped (DuckDB locks the file of a running server).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from protocol.catalog import TABLES
from server.analytics.export_requests import check_request
from server.analytics.xlsx_export import RowProgress, write_table
from server.config import Settings
from server.progress import Progress
from server.store.sql import ident

COPY_OPTIONS = {"csv": "(FORMAT csv, HEADER true)", "parquet": "(FORMAT parquet)"}
# A leading character that makes a spreadsheet run the field as a formula (cells.py).
_FORMULA_START = "left({c}, 1) IN ('=', '+', '-', '@', chr(9), chr(13))"
_INERT_SQL = "CASE WHEN " + _FORMULA_START + " THEN chr(39) || {c} ELSE {c} END AS {c}"


def export_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    fmt: str,
    path: Path,
    progress: RowProgress | None = None,
) -> int:
    """Write every row of `table` (catalog columns, key order) to `path`; the row count.
    `progress(done, of)` hears how far an xlsx export is (COPY runs in one call)."""
    check_request(table, fmt)
    if fmt == "xlsx":
        return write_table(con, table, path, progress)
    spec = TABLES[table]
    columns = ", ".join(
        _INERT_SQL.format(c=ident(c)) if fmt == "csv" and column.type == "varchar" else ident(c)
        for c, column in spec.columns.items()
    )
    order = ", ".join(ident(c) for c in spec.key)
    con.execute(
        f"COPY (SELECT {columns} FROM {ident(table)} ORDER BY {order}) TO ? {COPY_OPTIONS[fmt]}",
        [str(path)],
    )
    return con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]  # type: ignore[index]


# -- command line ----------------------------------------------------------------------


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.database_path
    if not path.exists():
        print(f"no database at {path}", file=sys.stderr)
        return 2
    bar = Progress(1)
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            bar.step(f"exporting {args.table} as {args.format}")
            rows = export_table(con, args.table, args.format, args.output, bar.rows)
    except duckdb.IOException as exc:
        print(locked_message(path, exc, f"GET /export/{args.table}"), file=sys.stderr)
        return 1
    bar.finish(f"exported {rows:,} rows of {args.table} to {args.output}")
    return 0


def locked_message(path: Path, exc: Exception, endpoint: str) -> str:
    """The CLI's error when DuckDB cannot open the file, naming the way around a lock."""
    if "lock" in str(exc).lower():
        return (
            f"cannot open {path}: it is in use, probably by a running server (DuckDB locks "
            f"the file). Stop the server first, or use its endpoint {endpoint} instead."
        )
    return f"cannot open {path}: {exc}"
