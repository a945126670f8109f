"""What deciding a batch changed, for the persister: the state of every touched row,
cell and hold as of the batch's last request, and each request's outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from protocol.rollup import Cell
from server.writer.changes import Step
from server.writer.state import Coords

LogRow = tuple[str, str, str, str | None, str | None, str]  # id, seq, status, code, message, user
HoldChange = tuple[Coords, int, bool, str, dt.datetime]  # cell, level, on, by, at


@dataclass
class Effects:
    last_id: str  # the last request covered: `_applied` once persisted
    ids: list[str] = field(default_factory=list)  # every request covered, to acknowledge
    # column -> chunks of (sale_ids, values in units) in decision order; later wins
    sales: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    cells: dict[Cell, list[int] | None] = field(default_factory=dict)  # None: gone
    writers: dict[Cell, tuple[str, dt.datetime]] = field(default_factory=dict)  # changed by, at
    holds: list[HoldChange] = field(default_factory=list)
    log: list[LogRow] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)  # history
    stacks: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # undo, redo
    schema: str | None = None  # the version's schema (None: main, actual)

    def merge(self, later: Effects) -> None:
        """Fold a later batch of the same version in: its values win."""
        assert later.schema == self.schema
        self.last_id = later.last_id
        self.ids += later.ids
        for column, chunks in later.sales.items():
            self.sales.setdefault(column, []).extend(chunks)
        self.cells.update(later.cells)
        self.writers.update(later.writers)
        self.holds += later.holds
        self.log += later.log
        self.steps += later.steps
        self.stacks.update(later.stacks)

    def sales_values(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(sale_ids, values) of a column, one per row: the latest value of each."""
        chunks = self.sales[column]
        ids = np.concatenate([c[0] for c in chunks])[::-1]
        values = np.concatenate([c[1] for c in chunks])[::-1]
        unique, first = np.unique(ids, return_index=True)  # first of reversed: the latest
        return unique, values[first]


Groups = dict[str | None, Effects]  # batches by version schema, each merged in order


def absorb(groups: Groups, later: Effects) -> None:
    """Fold a later batch into its version's group (versions touch disjoint tables, so
    only the order within one version matters)."""
    found = groups.get(later.schema)
    if found is None:
        groups[later.schema] = later
    else:
        found.merge(later)
