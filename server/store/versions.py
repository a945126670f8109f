"""Versions in DuckDB (DESIGN §13): `actual` is the main schema; every other version is
a schema of its own (`v1`, `v2`, …) holding its facts, summary, holds, history and undo
stacks under the same table names, so that every statement of the writer, persister
and reads runs unchanged with the version's schema first on the search path. The
dimensions (product, customer) and the bookkeeping (`_applied`, request_log) stay in
main, shared. Schema names come from the `versions` table, never from a client."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from protocol.catalog import TABLES
from protocol.errors import ProtocolError
from protocol.versions import CreateVersion, LockVersion
from seed.schema import create_month_pivot, rebuild_summary, sql_file

Conn = duckdb.DuckDBPyConnection
SCHEMA_NAME = re.compile(r"v[0-9]{1,9}", re.ASCII)
MAX_NET_PRICE = TABLES["sales"].columns["net_price"].max_abs
# The tables each version has of its own besides its facts and summary (the rest is
# shared, in main).
LOCAL_TABLES = ("holds", "history", "history_cells", "history_rows", "undo_stacks")
SUMMARY_DDL = """
CREATE SEQUENCE {schema}.summary_cell_ids;
CREATE TABLE {schema}.sales_summary_by_product_family (
    supplier VARCHAR, brand VARCHAR, family VARCHAR, month VARCHAR,
    level INTEGER NOT NULL, quantity BIGINT NOT NULL, net_amount DECIMAL(18, 2) NOT NULL,
    line_count BIGINT NOT NULL,
    cell_id BIGINT DEFAULT nextval('{schema}.summary_cell_ids'),
    changed_by VARCHAR, changed_at TIMESTAMP
);
"""


@dataclass(frozen=True)
class Version:
    name: str
    schema: str | None  # None: main (actual)
    source: str | None = None
    percent: Decimal | None = None
    locked: bool = False
    created_by: str | None = None
    created_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": self.source,
            "percent": None if self.percent is None else str(self.percent.normalize()),
            "locked": self.locked,
            "created_by": self.created_by,
            "created_at": None
            if self.created_at is None
            else self.created_at.isoformat(timespec="milliseconds") + "Z",
        }


def has_versions(con: Conn) -> bool:
    """Does the database know versions yet (a read-only one may predate them)?"""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND table_name = 'versions'"
        ).fetchone()[0]  # type: ignore[index]
    )


def read_versions(con: Conn) -> dict[str, Version]:
    """Every version, actual first, then by creation."""
    rows = con.execute(
        "SELECT name, schema_name, source, percent, locked, created_by, created_at "
        "FROM main.versions ORDER BY schema_name NULLS FIRST, created_at, name"
    ).fetchall()
    out = {}
    for row in rows:
        schema = row[1]
        if schema is not None and not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"versions table names a bad schema {schema!r}")
        out[row[0]] = Version(*row)
    return out


@contextmanager
def in_version(con: Conn, schema: str | None) -> Iterator[Conn]:
    """Run statements on `con` with the version's tables first (main: as is)."""
    if schema is None:
        yield con
        return
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"not a version schema: {schema!r}")
    con.execute(f"SET search_path = '{schema},main'")
    try:
        yield con
    finally:
        con.execute("RESET search_path")


def create_version(
    con: Conn, name: str, source: Version, percent: Decimal | None, by: str, at: dt.datetime
) -> Version:
    """A new version as a copy of `source` (net prices scaled by `percent`), inside the
    caller's transaction: its schema, facts, summary (fresh grouping sets over the
    copied facts, so exact) and empty holds, history and undo stacks."""
    number = con.execute(
        "SELECT coalesce(max(CAST(substr(schema_name, 2) AS INTEGER)), 0) + 1 FROM main.versions"
    ).fetchone()[0]  # type: ignore[index]
    schema = f"v{number}"
    src = source.schema or "main"
    factor = Decimal(1) + (percent or Decimal(0)) / 100
    largest = con.execute(
        f"SELECT max(abs(round(net_price * $factor, 2))) FROM {src}.sales", {"factor": factor}
    ).fetchone()[0]  # type: ignore[index]
    if largest is not None and largest > MAX_NET_PRICE:  # checked before anything changes
        raise ProtocolError(
            "invalid_value",
            f"scaled by {percent} %, a net_price would pass {MAX_NET_PRICE:,}",
            column="percent",
        )
    con.execute(f"CREATE SCHEMA {schema}")
    con.execute(
        f"""
        CREATE TABLE {schema}.sales AS
        SELECT sale_id, invoice_date, product_id, customer_id, quantity,
               round(net_price * $factor, 2)::DECIMAL(18, 2) AS net_price
        FROM {src}.sales ORDER BY sale_id
        """,
        {"factor": factor},
    )
    con.execute(SUMMARY_DDL.format(schema=schema))
    for table in LOCAL_TABLES:
        con.execute(f"CREATE TABLE {schema}.{table} AS SELECT * FROM main.{table} LIMIT 0")
    con.execute(f"SET schema = '{schema}'")
    try:
        con.execute(sql_file("views.sql"))
    finally:
        con.execute("RESET schema")
    with in_version(con, schema):
        rebuild_summary(con)
    con.execute(f"SET schema = '{schema}'")
    try:
        create_month_pivot(con)  # its months are the version's
    finally:
        con.execute("RESET schema")
    version = Version(name, schema, source.name, percent, False, by, at)
    con.execute(
        "INSERT INTO main.versions VALUES (?, ?, ?, ?, false, ?, ?)",
        [name, schema, source.name, percent, by, at],
    )
    return version


def set_locked(con: Conn, name: str, locked: bool) -> None:
    con.execute("UPDATE main.versions SET locked = ? WHERE name = ?", [locked, name])


def apply_version_request(
    con: Conn, action: CreateVersion | LockVersion, user: str, at: dt.datetime
) -> None:
    """Create or (un)lock a version inside the caller's transaction; ProtocolError when
    it cannot be (nothing is changed then)."""
    known = read_versions(con)
    if isinstance(action, LockVersion):
        if action.name not in known:
            raise ProtocolError("unknown_version", f"there is no version {action.name!r}")
        set_locked(con, action.name, action.locked)
        return
    if action.name in known:
        raise ProtocolError("version_exists", f"version {action.name!r} exists already")
    source = known.get(action.source)
    if source is None:
        raise ProtocolError("unknown_version", f"there is no version {action.source!r}")
    percent = None if action.percent is None else Decimal(action.percent)
    create_version(con, action.name, source, percent, user, at)


def resettle_versions(con: Conn) -> None:
    """Every version's summary afresh from its facts (after the product hierarchy moved
    them), inside the caller's transaction."""
    for version in read_versions(con).values():
        if version.schema is not None:
            with in_version(con, version.schema):
                rebuild_summary(con)
