"""Deciding interactive requests in memory: point edits of sales rows, summary-cell
edits (spreads) and holds, each a deterministic function of (state, request).

Every request is checked completely before it changes the state, so a rejected one
leaves no trace. Time comes from the request id, never the clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from protocol import spread as spreading
from protocol.actions import Action
from protocol.catalog import HIERARCHY, SUMMARY, TABLES
from protocol.codec import NO_SEQ
from protocol.edits import Edit, Hold
from protocol.errors import ProtocolError
from protocol.rollup import Cell, Delta, Node, add, roll_up
from protocol.values import max_abs
from server.writer.apportion import Overflow, proportional
from server.writer.batch import Limits
from server.writer.effects import Effects, HoldChange
from server.writer.ranges import OutOfRange, check_shares
from server.writer.state import EPOCH, NO_NODE, State, coords_of, patterns
from server.writer.state import Hold as HeldCell
from server.writer.upkeep import summary_row

log = logging.getLogger("ducksheet.writer")
HELD = "the change would alter a held cell; release the hold first"
SUMMARY_INPUTS = ("invoice_date", "product_id", "quantity", "net_price")  # move amounts
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
    if action is None or isinstance(action, Hold):
        return True
    if not isinstance(action, Edit):
        return False
    if TABLES[action.table].summary:
        return True
    condition = action.condition
    return (
        action.table == "sales"
        and list(condition) == ["sale_id"]
        and (condition["sale_id"] is not None)
    )


def request_time(request_id: str) -> dt.datetime:
    """The time a request entered the journal, from its stream id (UTC, naive)."""
    millis = int(request_id.split("-", 1)[0])
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=millis)


@dataclass
class Tracker:
    """What one batch changed: each touched cell's value before it, the touched rows."""

    cells_before: dict[Cell, list[int] | None] = field(default_factory=dict)
    rows: dict[str, set[int]] = field(default_factory=dict)  # column -> positions
    holds: list[dict[str, Any]] = field(default_factory=list)  # as announced
    hold_changes: list[HoldChange] = field(default_factory=list)  # as persisted


class Decider:
    def __init__(self, state: State, limits: Limits) -> None:
        self.state = state
        self.limits = limits
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
                error = self._decide_one(request, track)
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
        self.published = seq
        return payload, effects

    def _decide_one(self, request: Request, track: Tracker) -> ProtocolError | None:
        action = request.action
        try:
            if isinstance(action, Hold):
                self._hold(action, request, track)
            elif isinstance(action, Edit) and TABLES[action.table].summary:
                self._spread(action, track)
            elif isinstance(action, Edit):
                self._point_edit(action, track)
            else:
                raise ProtocolError("bad_message", "malformed request")
        except ProtocolError as exc:
            return exc
        except Exception as exc:  # a bug must not stop the writer: reject, keep going
            log.exception("deciding request %s failed", request.id)
            return ProtocolError("internal", f"the writer could not decide this request ({exc})")
        return None

    # --- point edits ----------------------------------------------------------------

    def _point_edit(self, edit: Edit, track: Tracker) -> None:
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
        old_node = int(state.row_node[i])
        product = value if column == "product_id" else int(sales.product_id[i])
        days = value if column == "invoice_date" else int(sales.invoice_date[i])
        moves_amounts = column in SUMMARY_INPUTS
        if (
            moves_amounts
            and state.holds
            and (state.node_held(old_node) or self._would_be_held(product, days))
        ):
            raise ProtocolError("held", HELD)
        deltas: dict[Node, Delta] = {}
        if column in SUMMARY_INPUTS:
            new_node = (
                state.node_of(product, days)
                if column in ("product_id", "invoice_date")
                else old_node
            )
            self._row_delta(deltas, i, old_node, -1)
            old = sales.column(column)[i]
            sales.column(column)[i] = value
            self._row_delta(deltas, i, new_node, 1)
            sales.column(column)[i] = old
            self._apply_cells(roll_up(deltas), track)  # raises before anything changed
            if new_node != old_node:
                state.move_row(i, new_node)
        sales.column(column)[i] = value
        track.rows.setdefault(column, set()).add(i)

    def _would_be_held(self, product_id: int, days: int) -> bool:
        hierarchy = self.state.products.get(product_id)
        if hierarchy is None:
            return False
        date = EPOCH + dt.timedelta(days=days)
        node = (*hierarchy, f"{date.year:04d}-{date.month:02d}")
        return any(coords in self.state.holds for coords in patterns(node))  # type: ignore[arg-type]

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

    # --- summary cells ----------------------------------------------------------------

    def _apply_cells(self, deltas: dict[Cell, Delta], track: Tracker) -> None:
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
            if cell not in track.cells_before:
                before = summary.get(cell)
                track.cells_before[cell] = None if before is None else list(before)
            if value is None:
                summary.pop(cell, None)
            else:
                summary[cell] = value

    def _changed_cells(self, track: Tracker, effects: Effects) -> list[dict[str, Any]]:
        """The cells whose value differs from before the batch, as rows to send: by
        level (grand total first), node, then month (all-months last)."""
        summary = self.state.summary
        rows = []
        for cell in sorted(track.cells_before, key=_cell_order):
            now = summary.get(cell)
            effects.cells[cell] = None if now is None else list(now)
            if now == track.cells_before[cell]:
                continue
            if now is None:
                rows.append(summary_row((*cell, 0, 0), deleted=True))
            else:
                rows.append(summary_row((*cell, now[0], Decimal(now[1]).scaleb(-2))))
        return rows

    def _changed_rows(self, track: Tracker, effects: Effects) -> dict[str, Any]:
        sales = self.state.sales
        touched: set[int] = set()
        for column, positions in track.rows.items():
            at = np.fromiter(sorted(positions), dtype=np.int64, count=len(positions))
            effects.sales[column] = [(sales.sale_id[at].copy(), sales.column(column)[at].copy())]
            touched |= positions
        cap = self.limits.base_rows_broadcast
        first = sorted(touched)[: cap + 1]
        rows = [{"table": "sales", **sales.row(i)} for i in first[:cap]]
        return {"base": rows, "base_truncated": len(first) > cap}

    # --- spreads --------------------------------------------------------------------

    def _spread(self, edit: Edit, track: Tracker) -> None:
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
        diff = new_values - units_of[changed_at]
        moved = diff != 0
        changed_at, new_values, diff = changed_at[moved], new_values[moved], diff[moved]
        if not len(changed_at):
            return
        column = "net_price" if scale == 100 else "quantity"
        check_shares(column, int(new_values.min()), int(new_values.max()), scale)
        self._apply_cells(roll_up(self._node_deltas(changed_at, diff, scale)), track)
        units_of[changed_at] = new_values
        track.rows.setdefault(column, set()).update(changed_at.tolist())

    def _node_deltas(self, at: np.ndarray, diff: np.ndarray, scale: int) -> dict[Node, Delta]:
        nodes = self.state.row_node[at]
        if float(np.abs(diff.astype(np.float64)).sum()) >= 2.0**62:
            raise OutOfRange("the change would take a summary total out of range")
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
        depth_columns = [i for i, name in enumerate(HIERARCHY) if coords[i] is None]
        if coords[3] is None:
            depth_columns.append(3)
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

    def _hold(self, hold: Hold, request: Request, track: Tracker) -> None:
        state, cell = self.state, hold.cell
        coords = coords_of(cell)
        if (*coords, cell["level"]) not in state.summary:
            raise ProtocolError("no_rows", "there is no such cell to hold")
        held = coords in state.holds
        if hold.on and not held:
            state.holds[coords] = HeldCell(cell["level"], request.user, request_time(request.id))  # type: ignore[arg-type]
        elif not hold.on and held:
            holder = state.holds[coords].by
            if holder != request.user and not request.admin:
                raise ProtocolError(
                    "forbidden", f"only {holder} (who holds this cell) or an admin can release it"
                )
            del state.holds[coords]
        else:
            return  # already in the asked state: nothing changes, nothing to announce
        state.refresh_holds()
        track.holds.append({**cell, "on": hold.on, "by": request.user})
        track.hold_changes.append(
            (coords, cell["level"], hold.on, request.user, request_time(request.id))  # type: ignore[arg-type]
        )


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


def _target(value: Any, scale: int) -> int:
    return int(Decimal(str(value)) * scale)


def _shown_units(units: int, scale: int) -> str | int:
    return str(Decimal(units) / scale) if scale != 1 else units
