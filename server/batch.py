"""What the edits of one writer transaction share: limits, the before-image of the
sales rows they change, and what to tell clients afterwards; and what the writer knows
about its database between transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb

Conn = duckdb.DuckDBPyConnection
Cell = tuple[str | None, str | None, str | None, str | None, int]  # + level
Measures = tuple[int, Decimal, int]  # quantity, net_amount, line_count
SummaryRow = tuple[int, int, Decimal, int]  # cell_id, quantity, net_amount, line_count

# A sales row's summary node and measures, from `sales s JOIN product p`.
SALES_NODE = """
    p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month,
    s.quantity, s.net_price
"""


@dataclass
class Limits:
    max_rows_per_edit: int = 10_000
    base_rows_broadcast: int = 200


@dataclass
class Known:
    """What the writer knows about its database between transactions, so a batch need
    not ask again. Its connection is the only one that writes, so this stays true as
    long as every transaction that changed it is reflected here: `apply_batch` updates
    it as the transaction goes (the summary copy) or after COMMIT, and forgets it on
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


@dataclass
class Changes:
    """The summary cells a batch changed, as RETURNING rows (cell columns, quantity,
    net_amount, line_count, cell_id, merge_action) tell: each cell's measures now and,
    for cells point edits changed, before the batch; None when the cell does not exist."""

    now: dict[Cell, Measures | None] = field(default_factory=dict)
    start: dict[Cell, Measures | None] = field(default_factory=dict)

    def add(
        self, returned: list[tuple[Any, ...]], deltas: dict[Cell, list[Any]] | None = None
    ) -> None:
        """Note RETURNING rows; `deltas` are what was added to each cell (the generic
        upkeep passes none: it comes last and its cells moved by a non-zero net)."""
        for row in returned:
            cell, measures, action = row[:5], row[5:8], row[9]
            if deltas is not None and cell not in self.now:
                self.start[cell] = _before(measures, action, deltas[cell])
            self.now[cell] = None if action == "DELETE" else measures

    def changed(self) -> dict[Cell, Measures | None]:
        """Cells whose measures differ from before the batch (as a fresh net delta over
        the whole batch would find), with their measures now."""
        return {
            cell: now
            for cell, now in self.now.items()
            if cell not in self.start or self.start[cell] != now
        }


def _before(measures: Measures, action: str, delta: list[Any]) -> Measures | None:
    if action == "INSERT":
        return None
    if action == "DELETE":  # RETURNING shows a deleted row as it was
        return measures
    quantity, net_amount, line_count = measures
    return (quantity - delta[0], net_amount - delta[1], line_count - delta[2])


@dataclass
class Batch:
    limits: Limits
    known: Known = field(default_factory=Known)
    has_holds: bool = False
    base_keys: dict[str, set[Any]] = field(default_factory=dict)  # changed product/customer keys
    holds: list[dict[str, Any]] = field(default_factory=list)  # holds set or released
    # True once a row went to `_before`: the summary then owes that row's change, which
    # update_summary settles at the end of the batch.
    before_pending: bool = False
    # Point edits and spreads settle their summary change at once, unless rows wait in
    # `_before`. The rows they changed, as they are now, by sale_id (of a spread, the
    # first base_rows_broadcast + 1 only):
    sales_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # imports, by request id
    reload: bool = False  # an import changed rows in bulk
    changes: Changes = field(default_factory=Changes)


def prepare(con: Conn) -> None:
    """Session temp tables used by every batch (the writer's connection only)."""
    con.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS _before (
            sale_id BIGINT, supplier VARCHAR, brand VARCHAR, family VARCHAR, month VARCHAR,
            quantity INTEGER, net_price DECIMAL(18, 2)
        )"""
    )


def capture_before(
    con: Conn, predicate: str, params: list[Any], batch: Batch | None = None
) -> None:
    """Remember the old node and measures of sales rows about to change (first time only).
    The summary is later moved by (after - before) of exactly these rows."""
    con.execute(
        f"""
        INSERT INTO _before
        SELECT s.sale_id, {SALES_NODE}
        FROM sales s JOIN product p USING (product_id)
        WHERE ({predicate}) AND s.sale_id NOT IN (SELECT sale_id FROM _before)
        """,
        params,
    )
    if batch is not None:
        batch.before_pending = True
