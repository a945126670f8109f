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
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from protocol.actions import Action, Undo
from protocol.catalog import LEVEL_FAMILY, TABLES
from protocol.codec import NO_SEQ, cents_json
from protocol.edits import Edit, EditMany, Hold, is_cell_edit
from protocol.errors import ProtocolError
from protocol.rollup import Cell, Delta, Node, add, roll_up
from protocol.versions import ACTUAL
from server.writer.batch import Limits
from server.writer.blocks import BlockDecisions
from server.writer.changes import CellValue, Change, RowChange, Step
from server.writer.effects import Effects, HoldChange
from server.writer.ranges import SUMMARY_CENTS, SUMMARY_QUANTITY, OutOfRange
from server.writer.spreads import SpreadDecisions
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

    cells_before: dict[Cell, CellValue] = field(default_factory=dict)
    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)  # column -> positions
    holds: list[dict[str, Any]] = field(default_factory=list)  # as announced
    hold_changes: list[HoldChange] = field(default_factory=list)  # as persisted
    steps: list[Step] = field(default_factory=list)

    def absorb(self, change: Change) -> None:
        for cell, before in change.cells.items():
            self.cells_before.setdefault(cell, before)
        for column, chunks in change.rows.items():
            self.rows.setdefault(column, []).extend(at for at, *_ in chunks)


@dataclass
class Unfinished:
    """A decided request whose rows are still to spread (Decider.finish)."""

    change: Change
    step: Step
    track: Tracker
    effects: Effects | None = None  # its batch's, once the payload is built


class Decider(BlockDecisions, SpreadDecisions):
    def __init__(self, state: State, limits: Limits, stacks: UndoStacks | None = None) -> None:
        self.state = state
        self.limits = limits
        self.stacks = stacks if stacks is not None else UndoStacks()
        self.published: str | None = None  # the seq of the last published batch
        self.version = ACTUAL  # the version this decider decides (see writer/versions.py)
        self.reference_state: Callable[[str], State | None] = lambda _name: None
        self._unfinished: Unfinished | None = None  # a request whose rows are to spread

    def decide(
        self,
        requests: list[Request],
        failed: dict[str, ProtocolError] | None = None,
        defer: bool = False,
    ) -> tuple[dict[str, Any], Effects]:
        """Decide `requests` in order: the response payload and the effects to persist.
        With `defer`, the last request may leave rows to spread: the payload is complete
        (its base rows truncated), the effects only once `finish` ran."""
        self.finish()
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
        if not defer:
            self.finish()
        payload = {
            "seq": seq,
            "prev": self.published or self.state.applied or NO_SEQ,
            "rows": self._changed_cells(track, effects),
            **self._changed_rows(track),
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
        if self._unfinished is not None:
            self._unfinished.effects = effects
        self.published = seq
        return payload, effects

    def _decide_one(self, request: Request, seq: str, track: Tracker) -> ProtocolError | None:
        self.finish()
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
            {},
            change.cell_changes(self.state),
            undoes,
        )
        if change.pending:  # rows to spread: after publishing, or before the next request
            self._unfinished = Unfinished(change, step, track)
            return step
        return self._kept(step, change)

    def _kept(self, step: Step, change: Change) -> Step | None:
        """The step with its rows, on its user's stacks; None when nothing changed."""
        step.rows = change.row_changes(self.state)
        if step.undoes is not None:
            self.stacks.moved(step.user, redo=step.action == "redo")
        elif not step.rows and not step.cells:
            return None
        elif step.action in UNDOABLE:
            self.stacks.pushed(step)
        return step

    def finish(self) -> bool:
        """Spread the rows the last request decided left pending (see
        blocks.PendingRows), completing its step and its batch's effects. Called
        before anything reads rows again: the next request, or right after publishing.
        Did it spread any?"""
        unfinished, self._unfinished = self._unfinished, None
        if unfinished is None:
            return False
        change, step, track = unfinished.change, unfinished.step, unfinished.track
        written = {column: len(chunks) for column, chunks in change.rows.items()}
        self._spread_pending(change)
        for column, chunks in change.rows.items():
            track.rows.setdefault(column, []).extend(
                at for at, *_ in chunks[written.get(column, 0) :]
            )
        if self._kept(step, change) is None:
            track.steps.remove(step)
        if unfinished.effects is not None:
            unfinished.effects.stacks.update(self.stacks.take_changed())
        return True

    def _record(self, step: Step, track: Tracker) -> None:
        track.steps.append(step)
        if step.action == "hold":
            return  # not a change of value: "changed by" stays
        self.state.writers.update(dict.fromkeys(step.cells, (step.user, step.time)))

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

    def _set_rows(
        self,
        column: str,
        at: np.ndarray,
        values: np.ndarray,
        change: Change,
        current: np.ndarray | None = None,
        nodes: np.ndarray | None = None,
    ) -> None:
        """Set a sales column at positions `at` (distinct), moving the summary with it;
        `current` and `nodes`: the column's values at `at` and the rows' nodes when the
        caller has them (a gather of a spread's rows costs milliseconds). Raises before
        anything changed when a held cell or a range is in the way."""
        state = self.state
        if current is None:
            current = state.sales.column(column)[at]
        if column not in SUMMARY_INPUTS:
            change.write(state, column, at, values, current)
            return
        old_nodes = state.row_node[at] if nodes is None else nodes
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
        cells = self._cell_deltas(column, at, values, current, old_nodes, new_nodes)
        self._apply_cells(cells, change)  # raises before anything changed
        change.write(state, column, at, values, current)
        if column in NODE_INPUTS:
            for i, _, new in _moves(at, old_nodes, new_nodes):
                change.move(state, i, new)

    def _cell_deltas(
        self,
        column: str,
        at: np.ndarray,
        values: np.ndarray,
        current: np.ndarray,
        old_nodes: np.ndarray,
        new_nodes: np.ndarray,
    ) -> dict[Cell, Delta]:
        """How setting `column` to `values` at `at` moves every summary cell."""
        state = self.state
        if column in NODE_INPUTS:
            deltas: dict[Node, Delta] = {}
            for i, old, new in _moves(at, old_nodes, new_nodes):
                self._row_delta(deltas, i, old, -1)
                self._row_delta(deltas, i, new, 1)
            return roll_up(deltas)
        if len(at) == 1:  # a point edit: no array work
            node = int(old_nodes[0])
            if node == NO_NODE:
                return {}
            units = int(values[0]) - int(current[0])
            measure = [0, units, 0] if column == "net_price" else [units, 0, 0]
            return dict.fromkeys(state.cells_of(node), measure)
        scale = 100 if column == "net_price" else 1
        diff = values.astype(np.int64) - current
        return self._many_deltas(old_nodes, diff, scale)

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
        new: dict[Cell, CellValue] = {}
        for cell, (dq, dc, dl) in deltas.items():
            if not (dq or dc or dl):
                continue
            row = summary.get(cell)
            value = (dq, dc, dl) if row is None else (row[0] + dq, row[1] + dc, row[2] + dl)
            if not -SUMMARY_QUANTITY <= value[0] <= SUMMARY_QUANTITY:
                raise OutOfRange(
                    f"the change would take a quantity total past {SUMMARY_QUANTITY:,}",
                    column="quantity",
                )
            if not -SUMMARY_CENTS <= value[1] <= SUMMARY_CENTS:
                raise OutOfRange(
                    f"the change would take a net_amount total past {SUMMARY_CENTS // 100:,}",
                    column="net_amount",
                )
            new[cell] = value if value[2] else None
        change.set_cells(self.state, new)

    def _changed_cells(self, track: Tracker, effects: Effects) -> list[dict[str, Any]]:
        """The cells whose value differs from before the batch, as rows to send: by
        level (grand total first), node, then month (all-months last)."""
        summary, writers = self.state.summary, self.state.writers
        shown: dict[Any, tuple[str | None, str | None]] = {}  # writer -> its fields, once
        rows = []
        for cell in sorted(track.cells_before, key=_cell_order):
            now = summary.get(cell)
            effects.cells[cell] = now
            writer = writers.get(cell)
            if writer is not None:
                effects.writers[cell] = writer
            if now == track.cells_before[cell]:
                continue
            if now is None:
                rows.append(summary_row((*cell, 0, 0), deleted=True))
                continue
            by = shown.get(writer)
            if by is None:
                by = shown[writer] = _writer_fields(writer)
            rows.append(summary_row((*cell, now[0], cents_json(now[1])), changed=by))
        return rows

    def _changed_rows(self, track: Tracker) -> dict[str, Any]:
        """The first touched sales rows, as the `base` rows of the payload."""
        sales = self.state.sales
        chunks = [at for column_chunks in track.rows.values() for at in column_chunks]
        cap = self.limits.base_rows_broadcast
        first = (
            distinct(np.concatenate(chunks), len(sales.sale_id))[: cap + 1].tolist()
            if chunks
            else []
        )
        rows = [{"table": "sales", **sales.row(i)} for i in first[:cap]]
        truncated = len(first) > cap or self._unfinished is not None  # its rows: not yet
        return {"base": rows, "base_truncated": truncated}

    def _many_deltas(self, nodes: np.ndarray, diff: np.ndarray, scale: int) -> dict[Cell, Delta]:
        """How rows' units changing by `diff` move the cells (rows of no node count
        nowhere): summed in float64 by node, then by cell, while every partial sum is
        exact there; else in Python integers."""
        if len(nodes) and int(nodes.min()) == NO_NODE:
            known = nodes != NO_NODE
            nodes, diff = nodes[known], diff[known]
        weights = diff.astype(np.float64)
        moved = float(np.abs(weights).sum())
        if moved >= 2.0**62:
            raise OutOfRange("the change would take a summary total out of range")
        if moved >= 2.0**52:
            return roll_up(self._node_deltas(nodes, diff, scale))
        totals = np.bincount(nodes, weights=weights)
        changed = np.flatnonzero(totals)
        sums = self.state.cell_sums(changed, totals[changed])
        if scale == 100:
            return {cell: [0, units, 0] for cell, units in sums.items()}
        return {cell: [units, 0, 0] for cell, units in sums.items()}

    def _node_deltas(self, nodes: np.ndarray, diff: np.ndarray, scale: int) -> dict[Node, Delta]:
        """Per node, the change of its rows' units, exactly (in Python integers)."""
        unique, local = np.unique(nodes, return_inverse=True)
        sums = np.zeros(len(unique), dtype=np.int64)
        np.add.at(sums, local, diff)
        deltas: dict[Node, Delta] = {}
        for node, units in zip(unique.tolist(), sums.tolist(), strict=True):
            key = self.state.nodes[node]
            deltas[key] = [0, units, 0] if scale == 100 else [units, 0, 0]
        return deltas

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


def distinct(positions: np.ndarray, size: int) -> np.ndarray:
    """The distinct row positions, ascending (for many, a mask: linear, unlike sorting)."""
    if len(positions) == 1:
        return positions
    if len(positions) * 16 < size:
        return np.unique(positions)
    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    return np.flatnonzero(mask)


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
