"""CSV import into `sales`, `product` or `customer` (DESIGN §8).

`apply_import` runs inside a transaction the caller opened (the writer, in stream order
with the edits; or `ducksheet import` with the server stopped). DuckDB's CSV reader
reads the file with explicit column types; numbers are read as text and checked exactly
like edits (whole quantities, at most 2 decimals, within the catalog's bounds), because
the reader would silently round 5.7 to 6. Records the reader cannot take (a bad date,
too many or too few columns, bad encoding) are collected with `store_rejects`; every
other rule is SQL over the records read, one pass for the per-value rules (missing,
wrong type, out of range, negative quantity, text longer than 200 characters, blank or
with control characters) plus keys repeated in the file or (without upsert) already in
the table, and unknown product_id/customer_id.

* mode "fast": all or nothing. Any bad row rejects the whole file with
  `invalid_import`, naming the first bad line; nothing is changed.
* mode "validate": the good rows are loaded and every problem of every bad row is
  recorded in `validation_logs` (import_id, file_name, row_number = the line in the
  file, the header being line 1, column_name, value, reason).

Keys: a row whose key is new is inserted. A key already in the table is rejected as a
duplicate unless `upsert` is true; then that row's non-key columns replace the stored
ones. Within one file a key may appear once; repeats are rejected (the first one wins).

Afterwards the summary is rebuilt from `sales_summary_fresh` in the same transaction
(imports of sales or product only), so it stays exact.
"""

from __future__ import annotations

import contextlib
import csv
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from protocol.actions import ImportSpec
from protocol.catalog import TABLES, Table
from protocol.errors import ProtocolError
from protocol.values import MAX_TEXT
from seed.schema import create_month_pivot, rebuild_summary
from server.store.sql import ident

Conn = duckdb.DuckDBPyConnection
Progress = Callable[[str], None]

SUMMARY_SOURCES = ("sales", "product")  # imports of these rebuild the summary
NUMERIC = ("integer", "bigint", "decimal")
MAX_LOGGED_VALUE = 1000  # characters of a bad value kept in validation_logs
NON_NEGATIVE = {"sales": ("quantity",)}
REFERENCES = {"sales": (("product_id", "product"), ("customer_id", "customer"))}
_NUMBER = r"-?[0-9]+(\.[0-9]+)?"
_KIND = ("a whole number", "a number")  # by scale > 0
_INEXACT = ("wrong type: not a whole number", "more than {} decimal places")
_CAST_PREFIX = r'^Error when converting column "[^"]*"\. '  # DuckDB's cast message
READ_OPTIONS = (
    "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
    "strict_mode = true, dateformat = '%Y-%m-%d', store_rejects = true, "
    "rejects_table = '_import_rejects', rejects_scan = '_import_scans'"
)
TEMP_TABLES = (
    "_import_read",
    "_import",
    "_import_reasons",
    "_import_problems",
    "_import_good",
    "_import_rejects",
    "_import_scans",
)


def invalid(message: str, **details: Any) -> ProtocolError:
    return ProtocolError("invalid_import", message, **details)


# -- apply -----------------------------------------------------------------------------


def apply_import(
    con: Conn, spec: Mapping[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """Import one CSV file inside the caller's open transaction; return the stats
    {import_id, table, mode, inserted, updated, rejected}.

    Raises ProtocolError("invalid_import", line=...) when the file is refused as a whole
    (fast mode with any bad row, or a bad header): nothing was changed and the
    transaction is still usable. A duckdb.Error means the transaction is aborted."""
    job = ImportSpec.parse(spec)
    report = progress or (lambda _message: None)
    started = time.perf_counter()
    header = read_header(Path(job.path), TABLES[job.table])
    target = Target.of(con, TABLES[job.table])
    try:
        records = _read(con, job, target, header)
        report(f"read {records:,} rows in {time.perf_counter() - started:.2f}s")
        rejected = _find_problems(con, target, job.upsert)
        report(f"checked: {rejected:,} bad rows ({time.perf_counter() - started:.2f}s)")
        if rejected and job.mode == "fast":
            raise _first_problem(con, rejected)
        _log_problems(con, job)
        inserted, updated = _write(con, target)
        report(
            f"loaded {inserted:,} new and {updated:,} updated rows, rejected {rejected:,} "
            f"({time.perf_counter() - started:.2f}s)"
        )
        if job.table in SUMMARY_SOURCES and inserted + updated:
            refresh_summary(con)
            report(f"summary rebuilt ({time.perf_counter() - started:.2f}s)")
    finally:
        _drop_temp_tables(con)
    return {
        "import_id": job.import_id,
        "table": job.table,
        "mode": job.mode,
        "inserted": inserted,
        "updated": updated,
        "rejected": rejected,
    }


def read_header(path: Path, table: Table) -> list[str]:
    """The file's column names: the table's columns, in any order, each once."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file), None)
    except FileNotFoundError as exc:
        raise invalid(f"the import file {path.name} is missing") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise invalid(f"line 1: cannot read the header: {exc}", line=1) from exc
    if not header:
        raise invalid("the file is empty: line 1 must name the columns", line=1)
    names = [name.strip() for name in header]
    expected = list(table.columns)
    missing = [c for c in expected if c not in names]
    unknown = [c for c in names if c not in table.columns]
    if missing or unknown or len(set(names)) != len(names):
        raise invalid(
            f"line 1: the header must name the columns of {table.name} once each "
            f"({', '.join(expected)}); missing: {missing or 'none'}, "
            f"unknown: {[u[:40] for u in unknown] or 'none'}",
            line=1,
        )
    return names


@dataclass(frozen=True)
class Target:
    """The table imported into, with the DuckDB type of each stored column."""

    table: Table
    types: dict[str, str]

    @classmethod
    def of(cls, con: Conn, table: Table) -> Target:
        rows = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "AND schema_name = 'main' AND database_name = current_database()",
            [table.name],
        ).fetchall()
        return cls(table, dict(rows))

    @property
    def key(self) -> str:
        return self.table.key[0]

    def numeric(self, column: str) -> bool:
        return self.table.columns[column].type in NUMERIC

    def read_type(self, column: str) -> str:
        """Numbers are read as text and checked exactly: DuckDB's reader would turn a
        quantity of 5.7 into 6 and a price of 10.555 into 10.56 without a word."""
        return "VARCHAR" if self.numeric(column) else self.types[column]

    def value(self, column: str) -> str:
        """SQL for the stored-type value of a column of `_import` (NULL if it is not one)."""
        name = ident(column)
        return f"TRY_CAST(trim({name}) AS {self.types[column]})" if self.numeric(column) else name


def _read(con: Conn, job: ImportSpec, target: Target, header: list[str]) -> int:
    """Read the file into temp table `_import` (one row per good record, with its
    `_line`) and DuckDB's rejects into `_import_rejects`; the number of records."""
    columns = ", ".join(f"'{name}': '{target.read_type(name)}'" for name in header)
    read_csv = f"read_csv(?, columns = {{{columns}}}, {READ_OPTIONS})"
    _probe(con, job.path, read_csv)
    con.execute("DROP TABLE IF EXISTS temp.main._import_rejects")
    con.execute("DROP TABLE IF EXISTS temp.main._import_scans")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _import_read AS SELECT * FROM {read_csv}",
        [job.path],
    )
    good = _count(con, "SELECT count(*) FROM _import_read")
    bad = _count(con, "SELECT count(DISTINCT line) FROM _import_rejects")
    # Rows come out in file order (rowid order); a rejected record keeps its line number,
    # so the k-th good row sits on the k-th line (from 2, the header being 1) not rejected.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _import AS
        WITH good AS (SELECT row_number() OVER (ORDER BY rowid) - 1 AS k, * FROM _import_read),
        lines AS (
            SELECT line, row_number() OVER (ORDER BY line) - 1 AS k
            FROM range(2, 2 + ?) t(line)
            WHERE line NOT IN (SELECT line FROM _import_rejects)
        )
        SELECT lines.line AS _line, good.* EXCLUDE (k)
        FROM good JOIN lines USING (k)
        """,
        [good + bad],
    )
    con.execute("DROP TABLE _import_read")
    return good + bad


def _probe(con: Conn, path: str, read_csv: str) -> None:
    """Parse the file once on a connection of its own. Bad values only become rejects,
    but a file the reader cannot tokenize at all (a stray carriage return, broken
    quoting) makes DuckDB raise, and an error inside the caller's transaction would
    abort it, with every edit of the writer's batch."""
    reader = con.cursor()
    try:
        reader.execute(f"SELECT count(*) FROM {read_csv}", [path]).fetchone()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
        line = re.search(r"Line: (\d+)", str(exc))
        details = {"line": int(line[1])} if line else {}
        raise invalid(f"the file cannot be read as CSV: {first}", **details) from exc
    finally:
        reader.close()


def _count(con: Conn, sql: str, params: list[Any] | None = None) -> int:
    return con.execute(sql, params or []).fetchone()[0]  # type: ignore[index]


# -- checks ----------------------------------------------------------------------------


def _find_problems(con: Conn, target: Target, upsert: bool) -> int:
    """Fill `_import_problems(line, column_name, value, reason)` with DuckDB's rejects
    and every failed check; the number of bad lines."""
    columns = list(target.table.columns)
    # One pass classifies every value (a CASE per column stops at its first failed rule).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _import_reasons AS SELECT _line, "
        + ", ".join(f"{_reason(target, c)} AS {ident(c)}" for c in columns)
        + " FROM _import"
    )
    any_reason = " OR ".join(f"{ident(c)} IS NOT NULL" for c in columns)
    value = " ".join(f"WHEN '{c}' THEN i.{ident(c)}::VARCHAR" for c in columns)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _import_problems AS
        SELECT line::BIGINT AS line, column_name,
               CASE WHEN error_type = 'CAST'
                    THEN regexp_extract(error_message, 'Could not convert string "(.*)" to', 1)
                    ELSE csv_line END AS value,
               CASE error_type
                   WHEN 'CAST' THEN 'wrong type: ' || regexp_replace(error_message, ?, '')
                   WHEN 'MISSING COLUMNS' THEN 'too few columns: ' || error_message
                   WHEN 'TOO MANY COLUMNS' THEN 'too many columns: ' || error_message
                   ELSE lower(error_type::VARCHAR) || ': ' || error_message
               END AS reason
        FROM _import_rejects
        UNION ALL
        SELECT u._line, u.column_name, CASE u.column_name {value} END, u.reason
        FROM (
            UNPIVOT (SELECT * FROM _import_reasons WHERE {any_reason})
            ON {", ".join(ident(c) for c in columns)}
            INTO NAME column_name VALUE reason
        ) u
        JOIN _import i USING (_line)
        UNION ALL
        {" UNION ALL ".join(_key_checks(target, upsert))}
        """,
        [_CAST_PREFIX],
    )
    return _count(con, "SELECT count(DISTINCT line) FROM _import_problems")


def _key_checks(target: Target, upsert: bool) -> list[str]:
    """Keys repeated in the file or (without upsert) already stored, unknown references:
    SELECTs of (line, column_name, value, reason)."""
    table, key = target.table, target.key
    checks = [
        f"""SELECT _line, '{key}', text, 'duplicate key: first on line ' || first_line
            FROM (SELECT _line, {ident(key)}::VARCHAR AS text, {target.value(key)} AS k
                  FROM _import) keyed
            JOIN (SELECT {target.value(key)} AS k, min(_line) AS first_line FROM _import
                  GROUP BY k HAVING count(*) > 1 AND k IS NOT NULL) repeated USING (k)
            WHERE _line > first_line"""
    ]
    if not upsert:
        checks.append(
            f"""SELECT _line, '{key}', {ident(key)}::VARCHAR, 'duplicate key: already in table'
                FROM _import
                WHERE {target.value(key)} IN (SELECT {ident(key)} FROM {ident(table.name)})"""
        )
    for column, parent in REFERENCES.get(table.name, ()):
        value = target.value(column)
        checks.append(
            f"""SELECT _line, '{column}', {ident(column)}::VARCHAR,
                       'unknown {column}: no such {parent}'
                FROM _import WHERE {value} IS NOT NULL
                 AND {value} NOT IN (SELECT {ident(column)} FROM {ident(parent)})"""
        )
    return checks


def _reason(target: Target, column_name: str) -> str:
    """SQL for why a value of `_import` is bad (its first failed rule), or NULL if good.
    The rules are those of edits: exact numbers within the catalog's bounds, text of at
    most 200 characters, not blank, without control characters."""
    column = target.table.columns[column_name]
    name, value, bound = ident(column.name), target.value(column.name), column.max_abs
    text = f"trim({name})"
    missing = "missing key" if column.name in target.table.key else "missing value"
    rules = [f"WHEN {name} IS NULL THEN '{missing}'"]
    if target.numeric(column.name):
        decimals = column.scale > 0
        negative = column.name in NON_NEGATIVE.get(target.table.name, ())
        rules += [
            f"WHEN regexp_full_match({text}, '{_exact(column.scale)}') THEN CASE"
            f" WHEN {value} IS NULL OR {value} > {bound} OR {value} < -{bound}"
            f" THEN 'out of range: magnitude above {bound}'"
            + (f" WHEN {value} < 0 THEN 'negative {column.name}'" if negative else "")
            + " END",
            f"WHEN regexp_full_match({text}, '{_NUMBER}')"
            f" THEN '{_INEXACT[decimals].format(column.scale)}'",
            f"ELSE 'wrong type: not {_KIND[decimals]}'",
        ]
    if column.type == "varchar":
        rules += [
            f"WHEN length({name}) > {MAX_TEXT} THEN 'text longer than {MAX_TEXT} characters'",
            f"WHEN regexp_matches({name}, '[\\x00-\\x1f]') THEN 'control characters in text'",
            f"WHEN {text} = '' THEN 'blank text'",
        ]
    return f"CASE {' '.join(rules)} END"


def _exact(scale: int) -> str:
    """A number with at most `scale` decimal places (trailing zeros aside), as edits allow."""
    return rf"-?[0-9]+(\.[0-9]{{0,{scale}}}0*)?"


def _first_problem(con: Conn, rejected: int) -> ProtocolError:
    line, column, value, reason = con.execute(
        "SELECT line, column_name, value, reason FROM _import_problems "
        "ORDER BY line, column_name NULLS FIRST LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    where = f" in column {column}" if column else ""
    shown = f" (value {value[:80]!r})" if value is not None else ""
    return invalid(
        f"line {line}: {reason}{where}{shown}; {rejected:,} bad row(s) in the file, "
        "nothing was imported (mode 'validate' loads the good rows and logs the bad ones)",
        line=line,
        column=column,
        rejected=rejected,
    )


def _log_problems(con: Conn, job: ImportSpec) -> None:
    con.execute(
        """
        INSERT INTO validation_logs (import_id, file_name, row_number, column_name, value, reason)
        SELECT ?, ?, line, column_name, left(value, ?), reason
        FROM _import_problems
        ORDER BY line, column_name NULLS FIRST
        """,
        [job.import_id, job.file_name, MAX_LOGGED_VALUE],
    )


# -- write -----------------------------------------------------------------------------


def _write(con: Conn, target: Target) -> tuple[int, int]:
    """Insert the good rows with new keys and update those whose key exists (only
    possible with upsert); (inserted, updated)."""
    table = target.table
    key, name = ident(target.key), ident(table.name)
    columns = ", ".join(ident(c) for c in table.columns)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _import_good AS
        SELECT {", ".join(f"{target.value(c)} AS {ident(c)}" for c in table.columns)},
               {target.value(target.key)} IN (SELECT {key} FROM {name}) AS _exists
        FROM _import
        WHERE _line NOT IN (SELECT line FROM _import_problems)
        """
    )
    updated = _count(con, "SELECT count(*) FROM _import_good WHERE _exists")
    if updated:
        assignments = ", ".join(
            f"{ident(c)} = g.{ident(c)}" for c in table.columns if c not in table.key
        )
        con.execute(
            f"UPDATE {name} SET {assignments} FROM _import_good g "
            f"WHERE {name}.{key} = g.{key} AND g._exists"
        )
    inserted = _count(
        con, f"INSERT INTO {name} ({columns}) SELECT {columns} FROM _import_good WHERE NOT _exists"
    )
    return inserted, updated


def refresh_summary(con: Conn) -> None:
    """Make the summary equal `sales_summary_fresh` again after bulk changes, and the
    month pivot view cover any new month. Changes the writer had noted for this
    transaction (`_before`, when it exists) are void then: the rebuilt summary already
    includes them, so they are forgotten, or the batch's upkeep would count them twice."""
    rebuild_summary(con)
    create_month_pivot(con)
    pending = _count(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = '_before'",
    )
    if pending:
        con.execute("DELETE FROM _before")


def _drop_temp_tables(con: Conn) -> None:
    """Free the staging tables; after a DuckDB error the transaction is aborted and its
    rollback removes them instead."""
    with contextlib.suppress(duckdb.Error):
        for name in TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS temp.main.{name}")


def import_file(
    database: Path, spec: ImportSpec, progress: Progress | None = None
) -> dict[str, Any]:
    """Open the database file (the server must be stopped) and import in one transaction."""
    with duckdb.connect(str(database)) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            stats = apply_import(con, spec.as_dict(), progress)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT")
    return stats
