"""xlsx exports, written with XlsxWriter in constant-memory mode (rows stream to the
file as they are written; chosen over openpyxl by bench/xlsx_writers.py).

* `write_table`: a whole table, typed cells, one sheet per 1,048,575 rows (Excel's
  limit), the header on each.
* `write_grid`: the summary as the grid shows it: one row per node (grand total,
  suppliers, brands, families), months as columns and the all-months total, Excel
  outline levels for the hierarchy, and the rows below collapsed nodes hidden (Excel's
  outline buttons open them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from protocol.catalog import LEVEL_BRAND, LEVEL_FAMILY, LEVEL_SUPPLIER, LEVEL_TOTAL, SUMMARY, TABLES
from server.analytics.cells import fits_a_double
from server.analytics.export_requests import MEASURES
from server.store.sql import ident

if TYPE_CHECKING:
    import xlsxwriter
    from xlsxwriter.worksheet import Worksheet

MAX_ROWS = 1_048_576  # rows of an Excel sheet, the header included
FETCH = 10_000
DEPTH = {LEVEL_TOTAL: 0, LEVEL_SUPPLIER: 1, LEVEL_BRAND: 2, LEVEL_FAMILY: 3}

PROGRESS_EVERY = 20_000  # rows between progress reports
Node = tuple[str | None, str | None, str | None]  # supplier, brand, family
RowProgress = Callable[[int, int], None]  # (rows written, rows in all)


def _workbook(path: Path) -> xlsxwriter.Workbook:
    import xlsxwriter  # imported by the first export: ~10 MB the data process seldom needs

    # strings_to_* off: a text cell is text, never a formula, number or link
    return xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )


def _fetch(cursor: duckdb.DuckDBPyConnection) -> Iterator[tuple[Any, ...]]:
    while batch := cursor.fetchmany(FETCH):
        yield from batch


def write_table(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, progress: RowProgress | None = None
) -> int:
    """Every row of `table` (catalog columns, key order) into `path`; the row count."""
    spec = TABLES[table]
    total = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0] if progress else 0  # type: ignore[index]
    columns = list(spec.columns)
    kinds = [spec.columns[c].type for c in columns]
    order = ", ".join(ident(c) for c in spec.key)
    cursor = con.execute(
        f"SELECT {', '.join(ident(c) for c in columns)} FROM {ident(table)} ORDER BY {order}"
    )
    book = _workbook(path)
    header = book.add_format({"bold": True})
    date = book.add_format({"num_format": "yyyy-mm-dd"})
    cents = book.add_format({"num_format": "0.00"})
    formats = {"date": date, "decimal": cents}
    sheet: Worksheet | None = None
    count = row = 0
    for record in _fetch(cursor):
        if sheet is None or row == MAX_ROWS:
            sheet = _table_sheet(book, table, columns, header, count)
            row = 1
        for col, (kind, value) in enumerate(zip(kinds, record, strict=True)):
            _write_value(sheet, row, col, value, formats.get(kind))
        row += 1
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count, total)
    if progress is not None:
        progress(count, max(total, count))
    if sheet is None:
        _table_sheet(book, table, columns, header, 0)
    book.close()
    return count


def _table_sheet(
    book: xlsxwriter.Workbook, table: str, columns: Sequence[str], header: Any, written: int
) -> Worksheet:
    part = written // (MAX_ROWS - 1)
    sheet = book.add_worksheet(table[:31] if part == 0 else f"{table[:26]} ({part + 1})")
    for col, name in enumerate(columns):
        sheet.write_string(0, col, name, header)
    sheet.freeze_panes(1, 0)
    return sheet


def _write_value(sheet: Worksheet, row: int, col: int, value: Any, fmt: Any = None) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, int | Decimal):
        if fits_a_double(value):
            sheet.write_number(row, col, float(value), fmt)
        else:
            sheet.write_string(row, col, str(value))  # every digit kept
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, dt.datetime.combine(value, dt.time()), fmt)
    else:
        sheet.write_string(row, col, str(value))


# -- the grid --------------------------------------------------------------------------


def grid_cells(
    con: duckdb.DuckDBPyConnection, measure: str
) -> tuple[list[str], dict[Node, dict[str | None, Any]], dict[Node, int]]:
    """(months, {node: {month or None: value}}, {node: level}) of the summary."""
    rows = con.execute(
        f"SELECT supplier, brand, family, level, month, {ident(measure)} FROM {ident(SUMMARY)}"
    ).fetchall()
    cells: dict[Node, dict[str | None, Any]] = {}
    levels: dict[Node, int] = {}
    months: set[str] = set()
    for supplier, brand, family, level, month, value in rows:
        node = (supplier, brand, family)
        cells.setdefault(node, {})[month] = value
        levels[node] = level
        if month is not None:
            months.add(month)
    return sorted(months), cells, levels


def display_order(levels: dict[Node, int]) -> list[Node]:
    """Grand total first, then each supplier followed by its brands and their families,
    siblings by name (case-insensitive)."""

    def key(node: Node) -> tuple[Any, ...]:
        return tuple((part is not None, (part or "").casefold(), part or "") for part in node)

    return sorted(levels, key=lambda n: (levels[n] != LEVEL_TOTAL, key(n)))


def label(node: Node, level: int) -> str:
    if level == LEVEL_TOTAL:
        return "Grand total"
    name = {LEVEL_SUPPLIER: node[0], LEVEL_BRAND: node[1], LEVEL_FAMILY: node[2]}[level]
    return name if name else "(blank)"


def visible(node: Node, level: int, expanded: set[Node]) -> bool:
    """Shown when every ancestor is expanded (the grand total always is)."""
    supplier, brand, _ = node
    if level in (LEVEL_TOTAL, LEVEL_SUPPLIER):
        return True
    if (supplier, None, None) not in expanded:
        return False
    return level == LEVEL_BRAND or (supplier, brand, None) in expanded


def write_grid(
    con: duckdb.DuckDBPyConnection, measure: str, expanded: Iterable[Node], path: Path
) -> int:
    """The summary as the grid shows it, into `path`; the number of node rows."""
    months, cells, levels = grid_cells(con, measure)
    open_nodes = set(expanded)
    book = _workbook(path)
    number = "#,##0.00" if measure == "net_amount" else "#,##0"
    bold = book.add_format({"bold": True})
    header = book.add_format({"bold": True, "bottom": 1, "align": "center"})
    values = [book.add_format({"num_format": number, "bold": depth < 3}) for depth in range(4)]
    names = [book.add_format({"indent": depth, "bold": depth < 3}) for depth in range(4)]
    sheet = book.add_worksheet(MEASURES[measure])
    sheet.outline_settings(True, False, True, False)  # totals sit above their children
    sheet.write_string(0, 0, MEASURES[measure], header)
    for col, month in enumerate([*months, "Total"], 1):
        sheet.write_string(0, col, month, header)
    sheet.set_column(0, 0, 36)
    sheet.set_column(1, len(months) + 1, 14)
    sheet.freeze_panes(1, 1)
    order = display_order(levels)
    for row, node in enumerate(order, 1):
        level = levels[node]
        depth = DEPTH[level]
        shown = visible(node, level, open_nodes)
        collapsed = level != LEVEL_FAMILY and level != LEVEL_TOTAL and node not in open_nodes
        options = {"level": depth, "hidden": not shown, "collapsed": collapsed}
        sheet.set_row(row, None, None, options)
        sheet.write_string(row, 0, label(node, level), names[depth])
        for col, month in enumerate([*months, None], 1):
            _write_value(sheet, row, col, cells[node].get(month), values[depth])
    sheet.write_string(len(order) + 2, 0, f"ducksheet, {SUMMARY}", bold)
    book.close()
    return len(order)
