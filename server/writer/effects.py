"""What deciding a batch changed, for the persister: the state of every touched cell
and hold as of the batch's last request, the steps of its applied requests (history,
and every changed row's value after it), and each request's outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from protocol.rollup import Cell
from server.writer.changes import CellValue, Step
from server.writer.state import Coords
from server.writer.undo import Snapshot

LogRow = tuple[str, str, str, str | None, str | None, str]  # id, seq, status, code, message, user
HoldChange = tuple[Coords, int, bool, str, dt.datetime]  # cell, level, on, by, at


@dataclass
class Effects:
    last_id: str  # the last request covered: `_applied` once persisted
    ids: list[str] = field(default_factory=list)  # every request covered, to acknowledge
    cells: dict[Cell, CellValue] = field(default_factory=dict)  # None: gone
    writers: dict[Cell, tuple[str, dt.datetime]] = field(default_factory=dict)  # changed by, at
    holds: list[HoldChange] = field(default_factory=list)
    log: list[LogRow] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)  # history; the rows' new values
    stacks: dict[str, Snapshot] = field(default_factory=dict)  # undo, redo
    schema: str | None = None  # the version's schema (None: main, actual)

    def merge(self, later: Effects) -> None:
        """Fold a later batch of the same version in: its values win."""
        assert later.schema == self.schema
        self.last_id = later.last_id
        self.ids += later.ids
        self.cells.update(later.cells)
        self.writers.update(later.writers)
        self.holds += later.holds
        self.log += later.log
        self.steps += later.steps
        self.stacks.update(later.stacks)

    def sales_columns(self) -> list[str]:
        """The sales columns the steps changed, in the order they first did."""
        return list(dict.fromkeys(column for step in self.steps for column in step.rows))

    def sales_values(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(sale_ids, values in units) of a column, one per changed row: its value after
        the last step that changed it. Taken from the steps, which hold them anyway for
        history and undo, rather than copied once more while deciding."""
        changes = [step.rows[column] for step in self.steps if column in step.rows]
        if len(changes) == 1:  # distinct sale ids already
            return changes[0].sale_ids, changes[0].after
        ids = np.concatenate([c.sale_ids for c in changes])[::-1]
        values = np.concatenate([c.after for c in changes])[::-1]
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
