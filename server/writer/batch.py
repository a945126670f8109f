"""What the edits of one barrier transaction share: limits, and what to tell clients
afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb

from protocol.rollup import Cell
from server.config import Settings

Conn = duckdb.DuckDBPyConnection
Measures = tuple[int, Decimal, int]  # quantity, net_amount, line_count


@dataclass
class Limits:
    max_rows_per_edit: int = Settings.max_rows_per_edit
    base_rows_broadcast: int = Settings.base_rows_broadcast
    undo_depth: int = Settings.undo_depth

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_rows_per_edit, settings.base_rows_broadcast, settings.undo_depth)


@dataclass
class Changes:
    """The summary cells a transaction changed, as MERGE ... RETURNING rows (cell
    columns, quantity, net_amount, line_count, cell_id, merge_action) tell: each cell's
    measures now, or None when it was deleted."""

    now: dict[Cell, Measures | None] = field(default_factory=dict)

    def add(self, returned: list[tuple[Any, ...]]) -> None:
        for row in returned:
            cell, measures, action = row[:5], row[5:8], row[9]
            self.now[cell] = None if action == "DELETE" else measures

    def changed(self) -> dict[Cell, Measures | None]:
        return self.now


@dataclass
class Batch:
    limits: Limits
    has_holds: bool = False
    base_keys: dict[str, set[Any]] = field(default_factory=dict)  # changed product/customer keys
    # True once a row went to `_before`: the summary then owes that row's change, which
    # update_summary settles at the end of the transaction.
    before_pending: bool = False
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # imports, by request id
    reload: bool = False  # an import changed rows in bulk
    versions: bool = False  # a version was created or (un)locked
    changes: Changes = field(default_factory=Changes)
