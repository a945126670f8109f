"""What the writer knows about its database between transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from protocol.catalog import CELL_KEY, SUMMARY
from protocol.rollup import Cell
from server.writer.batch import Conn, SummaryRow
from server.writer.holds import has_holds

# Where a RETURNING row of the summary (cell columns, measures, cell_id, merge_action)
# keeps the cell, its measures, its cell_id and the action.
CELL, MEASURES, CELL_ID, ACTION = slice(0, 5), slice(5, 8), 8, 9


@dataclass
class Known:
    """What the writer knows about its database between transactions, so a batch need
    not ask again. Its connection is the only one that writes, so this stays true as
    long as every transaction that changed it is reflected here: the batch updates it
    as the transaction goes (the summary copy) or after COMMIT, and forgets it on
    ROLLBACK. None means "unknown: ask DuckDB"."""

    any_holds: bool | None = None
    last_applied: str | None = None
    products: dict[int, tuple[str, str, str]] | None = None  # id -> supplier, brand, family
    summary: dict[Cell, SummaryRow] | None = None  # every summary cell, as it is now
    # Update appenders, by table and columns: prepared once on the writer's connection.
    # They hold no rows between flushes, so they stay valid across rollbacks.
    appenders: dict[tuple[str, tuple[str, ...]], duckdb.Appender] = field(default_factory=dict)

    def forget(self) -> None:
        self.any_holds = self.last_applied = self.products = self.summary = None

    def forget_products(self) -> None:
        self.products = None

    def forget_summary(self) -> None:
        self.summary = None

    def committed(self, last_applied: str, any_holds: bool) -> None:
        self.last_applied, self.any_holds = last_applied, any_holds

    def holds_exist(self, con: Conn) -> bool:
        if self.any_holds is None:
            self.any_holds = has_holds(con)
        return self.any_holds

    def product_nodes(self, con: Conn) -> dict[int, tuple[str, str, str]]:
        if self.products is None:
            rows = con.execute("SELECT product_id, supplier, brand, family FROM product").fetchall()
            self.products = {row[0]: row[1:] for row in rows}
        return self.products

    def summary_cells(self, con: Conn) -> dict[Cell, SummaryRow]:
        """The writer's copy of the summary (read once; kept by `remember`)."""
        if self.summary is None:
            columns = ", ".join((*CELL_KEY, "cell_id", "quantity", "net_amount", "line_count"))
            rows = con.execute(f"SELECT {columns} FROM {SUMMARY}").fetchall()
            self.summary = {row[CELL]: row[5:] for row in rows}
        return self.summary

    def remember(self, returned: list[tuple[Any, ...]]) -> None:
        """Keep the copy of the summary as RETURNING rows say the cells are now."""
        if self.summary is None:
            return
        for row in returned:
            if row[ACTION] == "DELETE":
                self.summary.pop(row[CELL], None)
            else:
                self.summary[row[CELL]] = (row[CELL_ID], *row[MEASURES])

    def update_rows(
        self, con: Conn, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        """Set columns[1:] of the rows of `table` whose columns[0] (a non-null key) is
        given, in one statement that needs no SQL parsed and planned per call."""
        appender = self.appenders.get((table, columns))
        if appender is None:
            appender = con.appender(table, columns=list(columns), action="update", key=[columns[0]])
            self.appenders[table, columns] = appender
        try:
            appender.append_rows(rows)
            appender.flush()
        except BaseException:
            appender.clear()
            raise
