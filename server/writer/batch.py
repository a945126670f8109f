"""What the edits of one writer transaction share: limits, what the writer knows, and
what to tell clients afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from protocol.rollup import Cell
from server.config import Settings

if TYPE_CHECKING:
    from server.writer.known import Known

Conn = duckdb.DuckDBPyConnection
Measures = tuple[int, Decimal, int]  # quantity, net_amount, line_count
SummaryRow = tuple[int, int, Decimal, int]  # cell_id, quantity, net_amount, line_count


@dataclass
class Limits:
    max_rows_per_edit: int = Settings.max_rows_per_edit
    base_rows_broadcast: int = Settings.base_rows_broadcast

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_rows_per_edit, settings.base_rows_broadcast)


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
    known: Known
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
