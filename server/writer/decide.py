"""Deciding interactive requests in memory: point edits of sales rows, summary-cell
edits (spreads), block edits, undo/redo and holds, each a deterministic function of
(state, request).

A request's changes are recorded as it is decided (`Change`); a rejected one is rolled
back and leaves no trace, an applied one leaves its `Step` for history and undo. Time
comes from the request id, never the clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from protocol import spread as spreading
from protocol.actions import Action, Undo
from protocol.catalog import HIERARCHY, LEVEL_FAMILY, SUMMARY, TABLES
from protocol.codec import NO_SEQ
from protocol.edits import Edit, EditMany, Hold, is_cell_edit
from protocol.errors import ProtocolError
from protocol.rollup import Cell, Delta, Node, add, roll_up
from protocol.values import max_abs
from server.writer.apportion import Overflow, proportional, proportional_many
from server.writer.batch import Limits
from server.writer.changes import Change, RowChange, Step
from server.writer.effects import Effects, HoldChange
from server.writer.ranges import OutOfRange, check_shares
from server.writer.state import EPOCH, NO_NODE, State, coords_of
from server.writer.state import Hold as HeldCell
from server.writer.undo import UndoStacks
from server.writer.upkeep import summary_row

log = logging.getLogger("ducksheet.writer")
HELD = "the change would alter a held cell; release the hold first"
SUMMARY_INPUTS = ("invoice_date", "product_id", "quantity", "net_price")  # move amounts
NODE_INPUTS = ("invoice_date", "product_id")  # move a row to another node
UNDOABLE = ("edit", "edit_many", "spread")
CONFLICTS_NAMED = 20  # cells an undo_conflict names at most
QUANTITY_MAX = max_abs(TABLES[SUMMARY].columns["quantity"])
CENTS_MAX = int(max_abs(TABLES[SUMMARY].columns["net_amount"]) * 100)


@dataclass(frozen=True)
class Request:
    id: str  # request_duck stream id
    action: Action | None  # None only for a body that no longer parses (then in `failed`)
    user: str
    ref: str | None = None  # the edge's correlation id, echoed in the outcome
    admin: bool = False  # may release anyone's hold


def is_interactive(action: Action | None) -> bool:
    """Decided in memory: holds, summary edits and edits of one sales row by key.
    Everything else (condition edits, product and customer edits, imports) is a
    barrier applied in DuckDB."""
    if action is None or isinstance(action, Hold | EditMany | Undo):
        return True
    return isinstance(action, Edit) and is_cell_edit(action)


def request_time(request_id: str) -> dt.datetime:
    """The time a request entered the journal, from its stream id (UTC, naive)."""
    millis = int(request_id.split("-", 1)[0])
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=millis)


@dataclass
class Tracker:
    """What one batch changed: each touched cell's value before it, the touched rows."""

    cells_before: dict[Cell, list[int] | None] = field(default_factory=dict)
    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)  # column -> positions
    holds: list[dict[str, Any]] = field(default_factory=list)  # as announced
    hold_changes: list[HoldChange] = field(default_factory=list)  # as persisted
    steps: list[Step] = field(default_factory=list)

    def absorb(self, change: Change) -> None:
        for cell, before in change.cells.items():
            self.cells_before.setdefault(cell, before)
        for column, chunks in change.rows.items():
            self.rows.setdefault(column, []).extend(at for at, _ in chunks)


class Decider:
    def __init__(self, state: State, limits: Limits, stacks: UndoStacks | None = None) -> None:
        self.state = state
        self.limits = limits
        self.stacks = stacks if stacks is not None else UndoStacks()
        self.published: str | None = None  # the seq of the last published batch

    def decide(
        self, requests: list[Request], failed: dict[str, ProtocolError] | None = None
    ) -> tuple[dict[str, Any], Effects]:
        """Decide `requests` in order: the response payload and the effects to persist."""
        failed = failed or {}
        seq = requests[-1].id
        track = Tracker()
        effects = Effects(seq, [r.id for r in requests])
        results = []
        for request in requests:
            error = failed.get(request.id)
            if error is None:
                error = self._decide_one(request, seq, track)
            results.append(outcome(request, seq, error))
        payload = {
            "seq": seq,
            "prev": self.published or self.state.applied or NO_SEQ,
            "rows": self._changed_cells(track, effects),
            **self._changed_rows(track, effects),
            "holds": track.holds,
            "by": sorted({r["user"] for r in results if r["status"] == "applied"}),
            "results": results,
        }
        effects.log = [
            (
                r["request"],
                seq,
                r["status"],
                r.get("error", {}).get("code"),
                r.get("error", {}).get("message"),
                r["user"],
            )
            for r in results
        ]
        effects.holds = track.hold_changes
        effects.steps = track.steps
        effects.stacks = self.stacks.take_changed()
        self.published = seq
        return payload, effects

    def _decide_one(self, request: Request, seq: str, track: Tracker) -> ProtocolError | None:
        change = Change()
        try:
            step = self._run(request, seq, change, track)
        except ProtocolError as exc:
            change.roll_back(self.state)
            return exc
        except Exception as exc:  # a bug must not stop the writer: reject, keep going
            log.exception("deciding request %s failed", request.id)
            change.roll_back(self.state)
            return ProtocolError("internal", f"the writer could not decide this request ({exc})")
        track.absorb(change)
        if step is not None:
            self._record(step, track)
        return None

    def _run(self, request: Request, seq: str, change: Change, track: Tracker) -> Step | None:
        """Decide one request into `change`; its step, or None when nothing changed."""
        action = request.action
        undoes = None
        if isinstance(action, Hold):
            return self._hold(action, request, seq, track)
        if isinstance(action, Edit):
            kind = "spread" if TABLES[action.table].summary else "edit"
            self._edit(action, change)
        elif isinstance(action, EditMany):
            kind = "edit_many"
            self._edit_many(action.edits, change)
        elif isinstance(action, Undo):
            kind = "redo" if action.redo else "undo"
            undoes = self._undo(request.user, action.redo, change)
        else:
            raise ProtocolError("bad_message", "malformed request")
        step = Step(
            request.id,
            seq,
            request.user,
            kind,
            request_time(request.id),
            change.row_changes(self.state),
            change.cell_changes(self.state),
            undoes,
        )
        if undoes is not None:
            self.stacks.moved(request.user, redo=kind == "redo")
        elif not step.rows and not step.cells:
            return None
        elif kind in UNDOABLE:
            self.stacks.pushed(step)
        return step

    def _record(self, step: Step, track: Tracker) -> None:
        track.steps.append(step)
        if step.action == "hold":
            return  # not a change of value: "changed by" stays
        for cell in step.cells:
            self.state.writers[cell] = (step.user, step.time)

    def _edit_many(self, edits: tuple[Edit, ...], change: Change) -> None:
        """A block, with the effect of its edits one after the other: spreads of
        disjoint cells of one shape go at once (in waves that never pass an earlier
        edit of an overlapping cell) unless something special (holds in the way,
        zeros, ranges) makes one differ; everything else one by one, in order, an error
        naming the edit's index."""
        peak: list[float] = []  # a bound on every total's magnitude, once needed
        todo = list(range(len(edits)))
        if all(_plain_spread(e) for e in edits):
            while todo:
                wave, rest = self._wave(edits, todo)
                if len(wave) < 2 or not self._spread_many([edits[i] for i in wave], change, peak):
                    break
                todo = rest
        self._edit_in_order(edits, todo, change, peak)

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
            if same == shape and not any(k in blocked or k in taken for k in nodes):
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

    def _edit(self, edit: Edit, change: Change) -> None:
        if TABLES[edit.table].summary:
            self._spread(edit, change)
        else:
            self._point_edit(edit, change)

    # --- point edits ----------------------------------------------------------------

    def _point_edit(self, edit: Edit, change: Change) -> None:
        state, sales = self.state, self.state.sales
        sale_id = edit.condition["sale_id"]
        i = sales.position(sale_id)  # type: ignore[arg-type]
        if i is None:
            raise ProtocolError("no_rows", f"there is no sale with sale_id {sale_id}")
        column = edit.column
        if edit.expect is not None:
            current = _shown_value(column, sales.row(i)[column])
            if current != _shown_value(column, _stored(column, edit.expect)):
                raise ProtocolError(
                    "conflict",
                    f"{column} is {current}, not the expected {edit.expect}",
                    current=current,
                )
        value = _units(column, edit.value)
        if column in ("product_id", "customer_id"):
            known = state.products if column == "product_id" else state.customers
            if value not in known:
                target = column.removesuffix("_id")
                raise ProtocolError(
                    "unknown_reference", f"there is no {target} with {column} {value}"
                )
        dtype = sales.column(column).dtype
        self._set_rows(column, np.array([i]), np.array([value], dtype=dtype), change)

    def _set_rows(self, column: str, at: np.ndarray, values: np.ndarray, change: Change) -> None:
        """Set a sales column at positions `at` (distinct), moving the summary with it.
        Raises before anything changed when a held cell or a range is in the way."""
        state = self.state
        if column not in SUMMARY_INPUTS:
            change.write(state, column, at, values)
            return
        old_nodes = state.row_node[at]
        new_nodes = old_nodes
        if column in NODE_INPUTS:
            products = values if column == "product_id" else state.sales.product_id[at]
            days = values if column == "invoice_date" else state.sales.invoice_date[at]
            new_nodes = np.array(
                [state.node_of(int(p), int(d)) for p, d in zip(products, days, strict=True)],
                dtype=np.int32,
            )
        if state.holds and (self._any_held(old_nodes) or self._any_held(new_nodes)):
            raise ProtocolError("held", HELD)
        if column in NODE_INPUTS:
            deltas: dict[Node, Delta] = {}
            for i, old, new in _moves(at, old_nodes, new_nodes):
                self._row_delta(deltas, i, old, -1)
                self._row_delta(deltas, i, new, 1)
        elif len(at) == 1:  # a point edit: no array work
            node, units = int(old_nodes[0]), int(values[0]) - int(state.sales.column(column)[at[0]])
            measure = [0, units, 0] if column == "net_price" else [units, 0, 0]
            deltas = {} if node == NO_NODE else {state.nodes[node]: measure}
        else:
            scale = 100 if column == "net_price" else 1
            diff = values.astype(np.int64) - state.sales.column(column)[at]
            deltas = self._node_deltas(old_nodes, diff, scale)
        self._apply_cells(roll_up(deltas), change)  # raises before anything changed
        change.write(state, column, at, values)
        if column in NODE_INPUTS:
            for i, _, new in _moves(at, old_nodes, new_nodes):
                change.move(state, i, new)

    def _any_held(self, nodes: np.ndarray) -> bool:
        known = nodes[nodes != NO_NODE]
        return bool(self.state.held_nodes[known].any())

    def _row_delta(self, deltas: dict[Node, Delta], i: int, node: int, sign: int) -> None:
        if node == NO_NODE:
            return
        sales = self.state.sales
        add(
            deltas,
            self.state.nodes[node],
            sign * int(sales.quantity[i]),
            sign * int(sales.cents[i]),
            sign,
        )

    # --- undo and redo --------------------------------------------------------------

    def _undo(self, user: str, redo: bool, change: Change) -> str:
        """Revert (or redo) the user's top step; the request id it names."""
        step = self.stacks.top(user, redo)
        if step is None:
            word = "redo" if redo else "undo"
            raise ProtocolError(f"nothing_to_{word}", f"you have nothing to {word}")
        rows = step.rows if redo else step.inverted()
        targets = {}
        for column, row_change in rows.items():
            at = self.state.sales.sale_id.searchsorted(row_change.sale_ids)
            at = np.minimum(at, len(self.state.sales.sale_id) - 1)
            gone = self.state.sales.sale_id[at] != row_change.sale_ids
            differs = gone | (self.state.sales.column(column)[at] != row_change.before)
            if differs.any():
                raise self._undo_conflict(step, redo, at[differs & ~gone], row_change, gone)
            targets[column] = (at, row_change)
        for column, (at, row_change) in targets.items():
            self._set_rows(column, at, row_change.after, change)
        return step.request

    def _undo_conflict(
        self,
        step: Step,
        redo: bool,
        changed_at: np.ndarray,
        row_change: RowChange,
        gone: np.ndarray,
    ) -> ProtocolError:
        """undo_conflict naming the cells whose rows changed since, and who changed them."""
        state = self.state
        cells = []
        for node in sorted({int(n) for n in state.row_node[changed_at]} - {NO_NODE}):
            supplier, brand, family, month = state.nodes[node]
            writer = state.writers.get((supplier, brand, family, month, LEVEL_FAMILY))
            cells.append(
                {
                    "supplier": supplier,
                    "brand": brand,
                    "family": family,
                    "month": month,
                    "level": LEVEL_FAMILY,
                    "by": writer[0] if writer else None,
                }
            )
        by = sorted({c["by"] for c in cells if c["by"]})
        names = ", ".join(
            f"{c['supplier']} / {c['brand']} / {c['family']} {c['month']}" for c in cells[:3]
        )
        if len(cells) > 3:
            names += f" and {len(cells) - 3} more"
        if gone.any():
            names = f"{names}; {int(gone.sum())} of its sales rows are gone".lstrip("; ")
        word = "redo" if redo else "undo"
        who = " and ".join(by) if by else "someone"
        return ProtocolError(
            "undo_conflict",
            f"{who} changed {names} since; nothing was {word}ne",
            cells=cells[:CONFLICTS_NAMED],
            by=by,
            undoes=step.request,
        )

    # --- summary cells ----------------------------------------------------------------

    def _apply_cells(self, deltas: dict[Cell, Delta], change: Change) -> None:
        """Move cells by [quantity, cents, lines] deltas; a cell left with no lines goes.
        Every new value is checked before any cell changes."""
        summary = self.state.summary
        new: dict[Cell, list[int] | None] = {}
        for cell, (dq, dc, dl) in deltas.items():
            if not (dq or dc or dl):
                continue
            row = summary.get(cell, [0, 0, 0])
            value = [row[0] + dq, row[1] + dc, row[2] + dl]
            if abs(value[0]) > QUANTITY_MAX:
                raise OutOfRange(
                    f"the change would take a quantity total past {QUANTITY_MAX:,}",
                    column="quantity",
                )
            if abs(value[1]) > CENTS_MAX:
                raise OutOfRange(
                    f"the change would take a net_amount total past {CENTS_MAX // 100:,}",
                    column="net_amount",
                )
            new[cell] = value if value[2] else None
        for cell, value in new.items():
            change.set_cell(self.state, cell, value)

    def _changed_cells(self, track: Tracker, effects: Effects) -> list[dict[str, Any]]:
        """The cells whose value differs from before the batch, as rows to send: by
        level (grand total first), node, then month (all-months last)."""
        summary, writers = self.state.summary, self.state.writers
        shown: dict[Any, tuple[str | None, str | None]] = {}  # writer -> its fields, once
        rows = []
        for cell in sorted(track.cells_before, key=_cell_order):
            now = summary.get(cell)
            effects.cells[cell] = None if now is None else list(now)
            writer = writers.get(cell)
            if writer is not None:
                effects.writers[cell] = writer
            if now == track.cells_before[cell]:
                continue
            if now is None:
                rows.append(summary_row((*cell, 0, 0), deleted=True))
            else:
                row = summary_row((*cell, now[0], Decimal(now[1]).scaleb(-2)))
                if writer not in shown:
                    shown[writer] = _writer_fields(writer)
                row["changed_by"], row["changed_at"] = shown[writer]
                rows.append(row)
        return rows

    def _changed_rows(self, track: Tracker, effects: Effects) -> dict[str, Any]:
        sales = self.state.sales
        touched = []
        for column, chunks in track.rows.items():
            at = distinct(np.concatenate(chunks), len(sales.sale_id))
            effects.sales[column] = [(sales.sale_id[at].copy(), sales.column(column)[at].copy())]
            touched.append(at)
        cap = self.limits.base_rows_broadcast
        first = (
            distinct(np.concatenate(touched), len(sales.sale_id))[: cap + 1].tolist()
            if touched
            else []
        )
        rows = [{"table": "sales", **sales.row(i)} for i in first[:cap]]
        return {"base": rows, "base_truncated": len(first) > cap}

    # --- spreads --------------------------------------------------------------------

    def _spread(self, edit: Edit, change: Change) -> None:
        state, cell = self.state, edit.condition
        coords = coords_of(cell)
        if coords in state.holds:
            raise ProtocolError("held", "this cell is held; release the hold to change it")
        scale = 100 if edit.column == "net_amount" else 1
        units_of = state.sales.cents if scale == 100 else state.sales.quantity
        rows = state.rows_below(coords)
        held = state.held_nodes[state.row_node[rows]] if state.holds else np.zeros(len(rows), bool)
        units = units_of[rows]
        held_units = int(units[held].sum())
        free_units = int(units[~held].sum())
        if edit.expect is not None and held_units + free_units != _target(edit.expect, scale):
            shown = _shown_units(held_units + free_units, scale)
            raise ProtocolError(
                "conflict", f"the cell is {shown}, not the expected {edit.expect}", current=shown
            )
        target = _target(edit.value, scale)
        free = rows[~held]
        if edit.spread == "proportional" and free_units != 0:
            new_units = self._proportional(coords, free, units_of[free], target - held_units)
            changed_at, new_values = free, new_units
        else:
            leaves = self._leaves(coords, rows, units, held)
            values = spreading.spread(leaves, target, edit.spread)
            changed_at = np.fromiter(values, dtype=np.int64, count=len(values))
            new_values = np.fromiter(values.values(), dtype=np.int64, count=len(values))
            changed_at = state.sales.sale_id.searchsorted(changed_at)
        moved = new_values != units_of[changed_at]
        changed_at, new_values = changed_at[moved], new_values[moved]
        if not len(changed_at):
            return
        column = "net_price" if scale == 100 else "quantity"
        check_shares(column, int(new_values.min()), int(new_values.max()), scale)
        self._set_rows(column, changed_at, new_values, change)

    def _spread_many(self, edits: list[Edit], change: Change, peak: list[float]) -> bool:
        """Proportional spreads of distinct cells of one shape (so their rows are
        disjoint) in one vectorized step, exactly as one after the other would do them.
        False, with nothing changed, when any of them needs the one-by-one path."""
        state = self.state
        scale = 100 if edits[0].column == "net_amount" else 1
        units_of = state.sales.cents if scale == 100 else state.sales.quantity
        parts: list[np.ndarray] = []
        depth = len(_depth_columns(coords_of(edits[0].condition)))
        groups: list[list[np.ndarray]] = [[] for _ in range(depth)]
        offsets = [0] * depth
        amounts = []
        leaves = self._leaf_cells(edits, units_of, scale) if depth == 0 else None
        if leaves is not None:
            parts, amounts = leaves
        for edit in edits if leaves is None else ():
            coords = coords_of(edit.condition)
            if coords in state.holds:
                return False
            found = state.rows_in_path_order(coords)
            if found is None:
                return False
            rows, row_groups = found
            held_units = 0
            if state.holds and len(rows):
                held = state.held_nodes[state.row_node[rows]]
                if held.any():
                    held_units = int(units_of[rows[held]].sum())
                    rows, row_groups = rows[~held], [_renumbered(g[~held]) for g in row_groups]
            if not len(rows) or int(units_of[rows].sum()) == 0:
                return False  # nothing to spread, all held, or not proportionally
            amounts.append(_target(edit.value, scale) - held_units)
            for d, group in enumerate(row_groups):
                groups[d].append(group + offsets[d])
                offsets[d] += int(group[-1]) + 1
            parts.append(rows)
        at = np.concatenate(parts)
        roots = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        try:
            shares = proportional_many(
                roots,
                [np.concatenate(g) for g in groups],
                units_of[at],
                np.array(amounts, dtype=np.int64),
            )
        except (Overflow, OverflowError):
            return False
        moved = shares != units_of[at]
        at, shares = at[moved], shares[moved]
        if not len(at):
            return True
        column = "net_price" if scale == 100 else "quantity"
        try:
            check_shares(column, int(shares.min()), int(shares.max()), scale)
        except OutOfRange:
            return False
        if not self._stays_in_range(shares - units_of[at], scale, peak):
            return False
        self._set_rows(column, at, shares, change)
        return True

    def _leaf_cells(
        self, edits: list[Edit], units_of: np.ndarray, scale: int
    ) -> tuple[list[np.ndarray], list[int]] | None:
        """For family-month cells (one node each, no levels below): their rows and
        amounts without a per-cell Python pass over arrays; None when one of them needs
        the general loop (a hold on it or above it, no rows, zeros, moved rows)."""
        state = self.state
        if state._moved or (
            state.holds and any(coords_of(e.condition) in state.holds for e in edits)
        ):
            return None
        nodes = [state.node_ids.get(coords_of(e.condition)) for e in edits]  # type: ignore[arg-type]
        if None in nodes:
            return None
        ks = np.array(nodes, dtype=np.int64)
        if state.holds and state.held_nodes[ks].any():
            return None
        starts, ends = state._starts[ks], state._starts[ks + 1]
        if (ends == starts).any():
            return None
        parts = [
            state._order[s:e].astype(np.int64)
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        offsets = np.r_[0, np.cumsum(ends - starts)[:-1]]
        totals = np.add.reduceat(units_of[np.concatenate(parts)], offsets)
        if not totals.all():
            return None
        return parts, [_target(e.value, scale) for e in edits]

    def _stays_in_range(self, diff: np.ndarray, scale: int, peak: list[float]) -> bool:
        """Would every total stay in range at every step of doing the spreads one by one?
        Each total moves by at most the sum of all changes; `peak` (per measure) bounds
        the totals' magnitudes so far in this block."""
        index, limit = (1, CENTS_MAX) if scale == 100 else (0, QUANTITY_MAX)
        if not peak:
            values = self.state.summary.values()
            peak += [float(max((abs(v[i]) for v in values), default=0)) for i in (0, 1)]
        peak[index] += float(np.abs(diff.astype(np.float64)).sum())
        return peak[index] < limit

    def _node_deltas(self, nodes: np.ndarray, diff: np.ndarray, scale: int) -> dict[Node, Delta]:
        """Per node, the change of its rows' units (rows of no node count nowhere)."""
        known = nodes != NO_NODE
        nodes, diff = nodes[known], diff[known]
        moved = float(np.abs(diff.astype(np.float64)).sum())
        if moved >= 2.0**62:
            raise OutOfRange("the change would take a summary total out of range")
        if moved < 2.0**52:  # every partial sum exact in float64: one linear pass
            totals = np.bincount(nodes, weights=diff.astype(np.float64))
            unique = np.flatnonzero(totals)
            sums = totals[unique].astype(np.int64)
        else:
            unique, local = np.unique(nodes, return_inverse=True)
            sums = np.zeros(len(unique), dtype=np.int64)
            np.add.at(sums, local, diff)
        deltas: dict[Node, Delta] = {}
        for node, units in zip(unique.tolist(), sums.tolist(), strict=True):
            key = self.state.nodes[node]
            deltas[key] = [0, units, 0] if scale == 100 else [units, 0, 0]
        return deltas

    def _path_ranks(
        self, coords: tuple[Any, ...], nodes: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """For the distinct `nodes` below a cell: each node's rank in path order, and per
        depth below the cell each node's group (numbered in path order)."""
        depth_columns = _depth_columns(coords)
        paths = [tuple(self.state.nodes[k][c] for c in depth_columns) for k in nodes.tolist()]
        order = sorted(range(len(paths)), key=paths.__getitem__)
        rank = np.empty(len(paths), dtype=np.int64)
        rank[order] = np.arange(len(paths))
        groups = []
        for depth in range(len(depth_columns)):
            group = np.empty(len(paths), dtype=np.int64)
            number, last = -1, None
            for k in order:
                prefix = paths[k][: depth + 1]
                if prefix != last:
                    number, last = number + 1, prefix
                group[k] = number
            groups.append(group)
        return rank, groups

    def _proportional(
        self, coords: tuple[Any, ...], free: np.ndarray, weights: np.ndarray, amount: int
    ) -> np.ndarray:
        """New units of the free rows (in the order given: ascending positions)."""
        nodes, local = np.unique(self.state.row_node[free], return_inverse=True)
        rank, groups = self._path_ranks(coords, nodes)
        order = np.lexsort((free, rank[local]))  # path order, then sale_id
        try:
            shares = proportional([g[local[order]] for g in groups], weights[order], amount)
        except Overflow as exc:
            raise OutOfRange("spreading this value would overflow a sales row") from exc
        out = np.empty_like(shares)
        out[order] = shares
        return out

    def _leaves(
        self, coords: tuple[Any, ...], rows: np.ndarray, units: np.ndarray, held: np.ndarray
    ) -> list[spreading.Leaf]:
        """The rows below a cell as spread leaves, ordered by (path, sale_id)."""
        nodes, local = np.unique(self.state.row_node[rows], return_inverse=True)
        rank, groups = self._path_ranks(coords, nodes)
        order = np.lexsort((rows, rank[local]))
        sale_ids = self.state.sales.sale_id
        return [
            spreading.Leaf(
                int(sale_ids[rows[j]]),
                tuple(int(g[local[j]]) for g in groups),
                int(units[j]),
                bool(held[j]),
            )
            for j in order.tolist()
        ]

    # --- holds --------------------------------------------------------------------

    def _hold(self, hold: Hold, request: Request, seq: str, track: Tracker) -> Step | None:
        state, cell = self.state, hold.cell
        coords = coords_of(cell)
        key = (*coords, cell["level"])
        value = state.summary.get(key)  # type: ignore[arg-type]
        if value is None:
            raise ProtocolError("no_rows", "there is no such cell to hold")
        held = coords in state.holds
        at = request_time(request.id)
        if hold.on and not held:
            state.holds[coords] = HeldCell(cell["level"], request.user, at)  # type: ignore[arg-type]
        elif not hold.on and held:
            holder = state.holds[coords].by
            if holder != request.user and not request.admin:
                raise ProtocolError(
                    "forbidden", f"only {holder} (who holds this cell) or an admin can release it"
                )
            del state.holds[coords]
        else:
            return None  # already in the asked state: nothing changes, nothing to announce
        state.refresh_holds()
        track.holds.append({**cell, "on": hold.on, "by": request.user})
        track.hold_changes.append((coords, cell["level"], hold.on, request.user, at))  # type: ignore[arg-type]
        return Step(
            request.id,
            seq,
            request.user,
            "hold",
            at,
            {},
            {key: (value, value)},
            held=hold.on,  # type: ignore[dict-item]
        )


def _renumbered(groups: np.ndarray) -> np.ndarray:
    """Contiguous group numbers again 0, 1, ... (after some rows were left out)."""
    if not len(groups):
        return groups
    return np.cumsum(np.r_[0, groups[1:] != groups[:-1]]).astype(np.int64)


def distinct(positions: np.ndarray, size: int) -> np.ndarray:
    """The distinct row positions, ascending (for many, a mask: linear, unlike sorting)."""
    if len(positions) * 16 < size:
        return np.unique(positions)
    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    return np.flatnonzero(mask)


def _depth_columns(coords: tuple[Any, ...]) -> list[int]:
    """The coordinates below a cell, top down: the hierarchy levels it leaves open,
    then the month when it is an all-months cell."""
    columns = [i for i, name in enumerate(HIERARCHY) if coords[i] is None]
    if coords[3] is None:
        columns.append(3)
    return columns


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
    return TABLES[edit.table].summary and edit.spread == "proportional" and edit.expect is None


def _moves(at: np.ndarray, old: np.ndarray, new: np.ndarray) -> list[tuple[int, int, int]]:
    """(position, old node, new node) of the rows that change node."""
    moved = old != new
    return list(zip(at[moved].tolist(), old[moved].tolist(), new[moved].tolist(), strict=True))


def _cell_order(cell: Cell) -> tuple[Any, ...]:
    supplier, brand, family, month, level = cell
    return (-level, supplier or "", brand or "", family or "", month is None, month or "")


def outcome(
    request: Request, seq: str, error: ProtocolError | None, stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A request's entry in a response payload's `results`."""
    result: dict[str, Any] = {
        "request": request.id,
        "ref": request.ref,
        "user": request.user,
        "status": "applied" if error is None else "rejected",
    }
    if error is None:
        result["seq"] = seq
        if stats is not None:
            result["stats"] = stats
    else:
        result["error"] = error.as_dict()
    return result


def _units(column: str, value: Any) -> int:
    """An edit's normalized value as the state stores it in `column`."""
    if column == "net_price":
        return int(Decimal(value) * 100)
    if column == "invoice_date":
        return (dt.date.fromisoformat(value) - EPOCH).days
    return int(value)


def _stored(column: str, value: Any) -> Any:
    if column == "net_price":
        return Decimal(value).quantize(Decimal("0.01")) + 0
    if column == "invoice_date":
        return dt.date.fromisoformat(value)
    return int(value)


def _shown_value(column: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _writer_fields(writer: tuple[str, dt.datetime] | None) -> tuple[str | None, str | None]:
    """changed_by and changed_at of a cell as rows carry them (ISO-8601 UTC)."""
    if writer is None:
        return None, None
    return writer[0], writer[1].isoformat(timespec="milliseconds") + "Z"


def _target(value: Any, scale: int) -> int:
    return int(Decimal(str(value)) * scale)


def _shown_units(units: int, scale: int) -> str | int:
    return str(Decimal(units) / scale) if scale != 1 else units
