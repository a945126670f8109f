"""The persister's summary writes (server/writer/cell_ids.py) on a real DuckDB file:
values, deletions, new cells and "changed by" land as given, whatever the order and
share of the table a group commit touches."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import duckdb

from protocol.catalog import CELL_KEY, SUMMARY
from protocol.rollup import Cell
from server.writer.cell_ids import CellIds

Row = tuple[Any, ...]  # quantity, net_amount, line_count, changed_by, changed_at
ANN = ("ann", dt.datetime(2026, 12, 1, 9, 30))
BOB = ("bob", dt.datetime(2026, 12, 2, 10, 0, 0, 123000))


def table(con: duckdb.DuckDBPyConnection) -> dict[Cell, Row]:
    rows = con.execute(
        f"SELECT {', '.join(CELL_KEY)}, quantity, net_amount, line_count, changed_by, "
        f"changed_at FROM {SUMMARY}"
    ).fetchall()
    return {tuple(row[:5]): tuple(row[5:]) for row in rows}  # type: ignore[misc]


def write(con: duckdb.DuckDBPyConnection, ids: CellIds, cells: Any, writers: Any) -> None:
    con.execute("BEGIN TRANSACTION")
    inserted = ids.write(con, cells, writers)
    con.execute("COMMIT")
    ids.committed(cells, inserted)


def test_most_of_the_table_in_random_order_with_and_without_writers(con) -> None:
    ids = CellIds.load(con)
    seeded = {cell: [row[0], int(row[1] * 100), row[2]] for cell, row in table(con).items()}
    write(con, ids, seeded, dict.fromkeys(seeded, BOB))  # every cell changed by bob
    before = table(con)
    cells = list(before)
    random.Random(7).shuffle(cells)
    changed = cells[: len(cells) * 9 // 10]  # most of the table, in no order
    values = {cell: [i - 50, 100 * i + 1, i % 5 + 1] for i, cell in enumerate(changed)}
    writers = {cell: ANN for i, cell in enumerate(changed) if i % 4}
    write(con, ids, values, writers)
    after = table(con)
    for cell in cells:
        if cell not in values:
            assert after[cell] == before[cell]
            continue
        quantity, cents, lines = values[cell]
        by, at = writers.get(cell, before[cell][3:])  # no writer: "changed by" stays
        assert after[cell] == (quantity, Decimal(cents).scaleb(-2), lines, by, at)


def test_deleted_new_and_kept_cells_in_one_write(con) -> None:
    ids = CellIds.load(con)
    before = table(con)
    gone, kept = list(before)[:2]
    fresh: Cell = ("a new supplier", None, None, "2031-01", 3)
    cells = {gone: None, kept: [7, -1999, 2], fresh: [1, 250, 1]}
    write(con, ids, cells, {kept: BOB, fresh: ANN})
    after = table(con)
    assert gone not in after and gone not in ids.ids
    assert after[kept] == (7, Decimal("-19.99"), 2, *BOB)
    assert after[fresh] == (1, Decimal("2.50"), 1, *ANN)
    assert fresh in ids.ids  # its cell_id, for the next write
    write(con, ids, {fresh: [2, 500, 2]}, {})
    assert table(con)[fresh] == (2, Decimal("5.00"), 2, *ANN)
