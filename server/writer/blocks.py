"""Block edits (DESIGN §12) decided in memory, with the effect of their edits one after
the other: plain proportional spreads of disjoint cells of one shape go together in one
vectorized step (`proportional_many`), in waves that never pass an earlier edit of an
overlapping cell; anything special goes one by one, in order. A mixin of the Decider
(server/writer/decide.py).

A month cell's edit that later edits of the same block wholly re-set (each of its
child cells is edited after it, and nothing else of that month and measure comes in
between) is superseded: its only lasting effect would be the rounding of the mix its
children then spread over, so it is left out. A pasted region of the expanded grid
(each brand row, then its families' rows) thus spreads every sales row once, by its
family, and every brand ends as the sum of its pasted families, as it would anyway."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.catalog import LEVEL_FAMILY, TABLES
from protocol.edits import Edit
from protocol.errors import ProtocolError
from server.writer.apportion import GroupShares, Overflow, group_shares
from server.writer.changes import Change
from server.writer.ranges import SUMMARY_CENTS, SUMMARY_QUANTITY, OutOfRange, check_shares
from server.writer.spreads import target_units
from server.writer.state import Coords, State, coords_of


class BlockDecisions:
    state: State

    def _edit_many(self, edits: tuple[Edit, ...], change: Change) -> None:
        """A block, with the effect of its edits one after the other: spreads of
        disjoint cells of one shape go at once (in waves that never pass an earlier
        edit of an overlapping cell) unless something special (holds in the way,
        zeros, ranges) makes one differ; everything else one by one, in order, an error
        naming the edit's index."""
        peak: list[float] = []  # a bound on every total's magnitude, once needed
        superseded = self._superseded(edits)
        todo = [i for i in range(len(edits)) if i not in superseded]
        if all(_plain_spread(e) for e in edits):
            while todo:
                wave, rest = self._wave(edits, todo)
                run = [edits[i] for i in wave]
                if len(wave) < 2 or not self._spread_many(run, change, peak, defer=True):
                    break
                todo = rest
        if todo and change.pending:
            self._spread_pending(change, peak)  # the edits one by one read the rows
        self._edit_in_order(edits, todo, change, peak)

    def _superseded(self, edits: tuple[Edit, ...]) -> set[int]:
        """The indexes of the edits later edits of the block wholly re-set (see the
        module's doc). Only in blocks of plain spreads of month cells, while nothing is
        held, and only for cells no earlier edit of the block touched and whose value
        is not zero, so that leaving one out cannot turn a rejection into an apply or
        change what the edits after it see beyond rounding."""
        state = self.state
        plain = all(_plain_spread(e) and e.condition["month"] is not None for e in edits)
        if state.holds or len(edits) < 2 or not plain:
            return set()
        last: dict[tuple[str, Coords], int] = {}  # (column, cell) -> its last edit
        same: dict[tuple[str, Any], list[int]] = {}  # (column, month) -> its edits, in order
        cells = [coords_of(e.condition) for e in edits]
        for i, (edit, coords) in enumerate(zip(edits, cells, strict=True)):
            last[(edit.column, coords)] = i
            same.setdefault((edit.column, coords[3]), []).append(i)
        out: set[int] = set()
        touched: dict[str, set[int]] = {}  # column -> the nodes an edit kept so far changes
        for i, (edit, coords) in enumerate(zip(edits, cells, strict=True)):
            nodes = state.under.get(coords, ())
            changed = touched.setdefault(edit.column, set())
            if (
                edit.condition["level"] != LEVEL_FAMILY
                and changed.isdisjoint(nodes)
                and self._resets(edit, i, last, same)
            ):
                out.add(i)
                continue
            changed.update(nodes)
        return out

    def _resets(
        self,
        edit: Edit,
        i: int,
        last: dict[tuple[str, Coords], int],
        same: dict[tuple[str, Any], list[int]],
    ) -> bool:
        """Do edits after `i` re-set every child cell of edit i's cell, with nothing
        else of its month and measure in between, and is that cell's value non-zero?"""
        coords = coords_of(edit.condition)
        value = self.state.summary.get((*coords, edit.condition["level"]))  # type: ignore[arg-type]
        children = self.state.child_cells(coords)
        if not value or not value[1 if edit.column == "net_amount" else 0] or not children:
            return False
        ats = [last.get((edit.column, child), -1) for child in children]
        if min(ats) <= i:
            return False
        between = same[(edit.column, coords[3])]
        end = max(ats)
        return bisect.bisect_right(between, end) - bisect.bisect_right(between, i) == len(ats)

    def _wave(self, edits: tuple[Edit, ...], todo: list[int]) -> tuple[list[int], list[int]]:
        """The edits (of `todo`, in order) of the first one's shape that no earlier
        edit still to do overlaps, and the rest. Disjoint edits commute, so doing the
        wave first changes nothing."""
        under = self.state.under
        first = edits[todo[0]]
        shape = (first.column, first.condition["level"], first.condition["month"] is None)
        taken: set[int] = set()
        blocked: set[int] = set()
        wave, rest = [], []
        for i in todo:
            edit = edits[i]
            nodes = under.get(coords_of(edit.condition), ())
            same = (edit.column, edit.condition["level"], edit.condition["month"] is None)
            if same == shape and blocked.isdisjoint(nodes) and taken.isdisjoint(nodes):
                wave.append(i)
                taken.update(nodes)
            else:
                rest.append(i)
                blocked.update(nodes)
        return wave, rest

    def _edit_in_order(
        self, edits: tuple[Edit, ...], todo: list[int], change: Change, peak: list[float]
    ) -> None:
        """The edits `todo` (ascending) in order: consecutive plain spreads of one
        shape at once, when they can be."""
        i = 0
        while i < len(todo):
            end = _spread_run([edits[k] for k in todo], i)
            run = [edits[k] for k in todo[i:end]]
            if end - i > 1 and self._spread_many(run, change, peak):
                i = end
                continue
            for index in todo[i : max(end, i + 1)]:
                try:
                    self._edit(edits[index], change)
                except ProtocolError as exc:
                    message = f"edit {index}: {exc.message}"
                    raise ProtocolError(exc.code, message, **exc.details, index=index) from exc
            i = max(end, i + 1)

    def _spread_many(
        self, edits: list[Edit], change: Change, peak: list[float], defer: bool = False
    ) -> bool:
        """Proportional spreads of distinct cells of one shape (so their rows are
        disjoint) in one vectorized step, exactly as one after the other would do them.
        False, with nothing changed, when any of them needs the one-by-one path.

        With `defer`, while nothing is held, the cells are decided from the rows' parents
        alone and the rows' own shares are left in `change.pending` (see PendingRows)
        whenever bounds show that no share can leave its column's range."""
        state = self.state
        scale = 100 if edits[0].column == "net_amount" else 1
        units_of = state.sales.cents if scale == 100 else state.sales.quantity
        cells = [coords_of(edit.condition) for edit in edits]
        if state.holds and any(c in state.holds for c in cells):
            return False
        found = state.cells_in_path_order(cells)
        if found is None:
            return False
        at, roots, groups, nodes = found.rows, found.cell, found.groups, found.node
        if change.pending and _pending_mask(change, len(state.nodes))[nodes].any():
            self._spread_pending(change, peak)  # these rows' values are still to come
        units = units_of[at]
        held_units = np.zeros(len(edits), dtype=np.int64)
        if state.holds:
            held = state.held_nodes[nodes]
            if held.any():
                held_units = _per_cell(units[held], roots[held], len(edits))
                free = ~held
                at, roots, units, nodes = at[free], roots[free], units[free], nodes[free]
                groups = [_renumbered(g[free]) for g in groups]
        rows_per_cell = np.bincount(roots, minlength=len(edits))
        if not rows_per_cell.all() or not _per_cell(units, roots, len(edits)).all():
            return False  # nothing to spread, all held, or not proportionally
        amounts = np.array([target_units(e.value, scale) for e in edits], dtype=np.int64)
        column = "net_price" if scale == 100 else "quantity"
        try:
            settled = group_shares(roots, groups, units, amounts - held_units)
            deferred = defer and not state.holds
            if deferred and self._defer_rows(column, at, units, nodes, settled, change, peak):
                return True
            shares = settled.row_shares(units)
        except (Overflow, OverflowError):
            return False
        moved = shares != units
        if not moved.all():  # (usually every row moves: no gathers then)
            at, shares, units, nodes = at[moved], shares[moved], units[moved], nodes[moved]
        if not len(at):
            return True
        try:
            check_shares(column, int(shares.min()), int(shares.max()), scale)
        except OutOfRange:
            return False
        magnitude = _magnitude(shares - units)
        if not self._stays_in_range(magnitude, scale, peak, change):
            return False
        self._set_rows(column, at, shares, change, current=units, nodes=nodes)
        return True

    def _defer_rows(
        self,
        column: str,
        at: np.ndarray,
        units: np.ndarray,
        nodes: np.ndarray,
        settled: GroupShares,
        change: Change,
        peak: list[float],
    ) -> bool:
        """Decide the spread's cells from what each node's rows share (the last level
        of groups is the nodes) and leave the rows to PendingRows, when bounds show
        that the exact path would take the same decision: no share out of its column's
        range, every total in range. False, with nothing changed, when in doubt."""
        scale = 100 if column == "net_price" else 1
        index = 1 if scale == 100 else 0
        low, high, magnitude = _share_bounds(settled, units)
        try:
            check_shares(column, low, high, scale)
        except OutOfRange:
            return False
        if not self._stays_in_range(magnitude, scale, peak, change, exact=False):
            return False
        starts = np.flatnonzero(np.r_[True, settled.parent[1:] != settled.parent[:-1]])
        node_diff = settled.shares - np.add.reduceat(units, starts)
        self._apply_cells(self._many_deltas(nodes[starts], node_diff, scale), change)
        deferred = PendingRows(column, at, units, settled, nodes[starts], index, magnitude)
        change.pending.append(deferred)
        return True

    def _spread_pending(self, change: Change, peak: list[float] | None = None) -> None:
        """Spread the rows of the deferred waves of `change`, in order (their cells
        are decided already); `peak` gets their exact magnitudes for their bounds."""
        pending, change.pending = change.pending, []
        for rows in pending:
            magnitude = rows.spread(self.state, change)
            if peak:
                peak[rows.measure] += magnitude - rows.bound

    def _stays_in_range(
        self,
        magnitude: float,
        scale: int,
        peak: list[float],
        change: Change,
        exact: bool = True,
    ) -> bool:
        """Would every total stay in range at every step of doing the spreads one by one?
        Each total moves by at most the sum of all changes (`magnitude`: their sum of
        |change|); `peak` (per measure) bounds the totals' magnitudes so far in this
        block: at first the sum of every row's magnitude, which no total (a sum of rows)
        exceeds. Deferred waves count with a bound of their magnitude (`exact` False: a
        bound, counted only when it passes); when the bounds are in the way, the
        deferred rows are spread, to count exactly."""
        index, limit = (1, SUMMARY_CENTS) if scale == 100 else (0, SUMMARY_QUANTITY)
        if not peak:
            sales = self.state.sales
            peak += [_magnitude(sales.quantity), _magnitude(sales.cents)]
        if peak[index] + magnitude >= limit:
            if not exact:
                return False
            if change.pending:
                self._spread_pending(change, peak)
        peak[index] += magnitude
        return peak[index] < limit


@dataclass(frozen=True)
class PendingRows:
    """A wave of spreads whose cells are decided and whose rows get their shares
    later: after the batch is published (the rows are what persisting and later
    requests need, not the sockets), or as soon as anything reads them."""

    column: str
    at: np.ndarray
    units: np.ndarray  # the rows' values before
    settled: GroupShares
    nodes: np.ndarray  # the nodes whose rows these are
    measure: int  # 0 quantity, 1 net_amount (the index in a block's peak)
    bound: float  # counted in the peak for the exact magnitude, still unknown

    def spread(self, state: State, change: Change) -> float:
        """Write the rows' shares; their sum of |change| (what _magnitude gives)."""
        shares = self.settled.row_shares(self.units)
        at, units = self.at, self.units
        moved = shares != units
        if not moved.all():
            at, shares, units = at[moved], shares[moved], units[moved]
        if len(at):
            change.write(state, self.column, at, shares, units)
        return _magnitude(shares - units)


def _pending_mask(change: Change, size: int) -> np.ndarray:
    """Per node: do deferred waves of `change` spread its rows?"""
    mask = np.zeros(size + 1, dtype=bool)  # the last slot: NO_NODE
    for rows in change.pending:
        mask[rows.nodes] = True
    return mask


def _share_bounds(settled: GroupShares, units: np.ndarray) -> tuple[int, int, float]:
    """Bounds of what row_shares gives: the lowest and highest share, and a bound of
    the sum of |share - unit|. A row's share is floor(w * q) or one more, q being its
    root's amount over its total, so the extremes come from each root's extreme
    weights; |share - w| <= |w| * |q - 1| + 1. Float error is covered by margins."""
    starts = np.flatnonzero(np.r_[True, settled.roots[1:] != settled.roots[:-1]])
    q = settled.factors.astype(np.float64) / settled.dens.astype(np.float64)
    low_w = np.minimum.reduceat(units, starts).astype(np.float64) * q
    high_w = np.maximum.reduceat(units, starts).astype(np.float64) * q
    smallest = float(np.minimum(low_w, high_w).min())
    largest = float(np.maximum(low_w, high_w).max())
    low = 0 if smallest >= 0 else math.floor(smallest * (1 + 1e-9)) - 2
    high = math.ceil(largest * (1 + 1e-9)) + 2 if largest > 0 else 2
    moved = float((np.abs(q - 1) * settled.absolute.astype(np.float64)).sum()) + len(units)
    return low, high, moved * (1 + 1e-6) + 1


def _magnitude(values: np.ndarray) -> float:
    """The sum of |values|, rounded up past float64's error on a million terms."""
    return float(np.abs(values).sum(dtype=np.float64)) * (1 + 1e-9)


def _per_cell(values: np.ndarray, cell: np.ndarray, count: int) -> np.ndarray:
    """Exact int64 sums of `values` per cell (`cell` ascending), zero for cells absent."""
    sums = np.zeros(count, dtype=np.int64)
    if len(values):
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        sums[cell[starts]] = np.add.reduceat(values, starts)
    return sums


def _renumbered(groups: np.ndarray) -> np.ndarray:
    """Contiguous group numbers again 0, 1, ... (after some rows were left out)."""
    if not len(groups):
        return groups
    return np.cumsum(np.r_[0, groups[1:] != groups[:-1]]).astype(np.int64)


def _spread_run(edits: list[Edit], start: int) -> int:
    """Where the run of edits from `start` that `_spread_many` may take ends: plain
    proportional spreads of one column, of distinct cells of one shape."""
    first = edits[start]
    if not _plain_spread(first):
        return start + 1
    shape = (first.column, first.condition["level"], first.condition["month"] is None)
    seen = set()
    end = start
    while end < len(edits):
        edit = edits[end]
        if not _plain_spread(edit):
            break
        key = tuple(edit.condition.values())
        shaped = (edit.column, edit.condition["level"], edit.condition["month"] is None)
        if shaped != shape or key in seen:
            break
        seen.add(key)
        end += 1
    return end


def _plain_spread(edit: Edit) -> bool:
    return (
        TABLES[edit.table].summary
        and edit.spread == "proportional"
        and edit.expect is None
        and "period" not in edit.condition  # a quarter or year: its own rows, one by one
    )
