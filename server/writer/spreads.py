"""Spreading a summary cell's new value over the sales rows below it, in memory: the
proportional rule and the common case of `like` vectorized (server/writer/apportion.py),
equal spreads and the edge cases through the pure reference (protocol/spread.py), rows in
path order below the cell. A mixin of the Decider (server/writer/decide.py), which owns
the state and `_set_rows`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np

from protocol import spread as spreading
from protocol.catalog import HIERARCHY
from protocol.edits import Edit, period_months
from protocol.errors import ProtocolError
from protocol.rollup import Cell, Node
from server.writer.apportion import Overflow, like, proportional
from server.writer.changes import Change
from server.writer.ranges import OutOfRange, check_shares
from server.writer.state import PathRows, State, Totals, coords_of

# The level of a month cell's children, by how many hierarchy columns lie below the
# cell: a brand's children are families (0), a supplier's brands (1), the total's
# suppliers (3).
CHILD_LEVEL = (0, 1, 3)


class SpreadDecisions:
    state: State
    version: str  # the name of the version decided
    reference_state: Callable[[str], State | None]  # another version's state, by name

    def _spread(self, edit: Edit, change: Change) -> None:
        state, cell = self.state, edit.condition
        coords = coords_of(cell)
        if coords in state.holds:
            raise ProtocolError("held", "this cell is held; release the hold to change it")
        scale = 100 if edit.column == "net_amount" else 1
        units_of = state.sales.cents if scale == 100 else state.sales.quantity
        months = period_months(cell.get("period"))  # type: ignore[arg-type]
        # a month or all-months cell's rows come in path order from the state's index
        indexed = state.cells_in_path_order([coords]) if months is None else None
        rows = state.rows_below(coords, months) if indexed is None else indexed.rows
        held = state.held_nodes[state.row_node[rows]] if state.holds else np.zeros(len(rows), bool)
        units = units_of[rows]
        held_units = int(units[held].sum())
        free_units = int(units[~held].sum())
        if edit.expect is not None and held_units + free_units != target_units(edit.expect, scale):
            shown = _shown_units(held_units + free_units, scale)
            raise ProtocolError(
                "conflict", f"the cell is {shown}, not the expected {edit.expect}", current=shown
            )
        method = edit.spread
        if method == "percent":  # a change of the current value, then spread like it
            target = spreading.percent_target(held_units + free_units, str(edit.value))
            method = "proportional"
        else:
            target = target_units(edit.value, scale)
        changed_at, new_values = self._new_units(
            edit, method, rows, units, held, target, scale, indexed
        )
        moved = new_values != units_of[changed_at]
        changed_at, new_values = changed_at[moved], new_values[moved]
        if not len(changed_at):
            return
        column = "net_price" if scale == 100 else "quantity"
        check_shares(column, int(new_values.min()), int(new_values.max()), scale)
        self._set_rows(column, changed_at, new_values, change)

    def _new_units(
        self,
        edit: Edit,
        method: str,
        rows: np.ndarray,
        units: np.ndarray,
        held: np.ndarray,
        target: int,
        scale: int,
        indexed: PathRows | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The positions of rows below the cell and their new units: vectorized for
        proportional spreads and the common `like`, else by the pure rules (equal, the
        edge cases, proportional over rows that are all zero). `indexed`: the cell's
        rows as the state's index orders them, when `rows` came from it (the
        proportional spread then needs no sort)."""
        coords = coords_of(edit.condition)
        free = ~held
        if method == "proportional" and int(units[free].sum()) != 0:
            amount = target - int(units[held].sum())
            shares = self._proportional(coords, rows[free], units[free], amount, indexed)
            return rows[free], shares
        columns = None
        if method == "like":
            mix, columns = self._like_mix(edit, coords, rows, scale)
            liked = self._like(coords, rows, units, held, target, mix, columns)
            if liked is not None:
                return liked
        leaves = self._leaves(coords, rows, units, held, columns)
        if method == "like":
            values = spreading.spread_like(leaves, target, mix)
        else:
            values = spreading.spread(leaves, target, method)
        sale_ids = np.fromiter(values, dtype=np.int64, count=len(values))
        new_units = np.fromiter(values.values(), dtype=np.int64, count=len(values))
        return self.state.sales.sale_id.searchsorted(sale_ids), new_units

    def _like_mix(
        self, edit: Edit, coords: tuple[Any, ...], rows: np.ndarray, scale: int
    ) -> tuple[dict[int, int], list[int] | None]:
        """`like`'s mix (each child's group number -> its reference value) and the path
        columns its children are taken along (None: the cell's own)."""
        cell = edit.condition
        columns = None
        if cell.get("period") is not None:  # a quarter or year: its months are the children
            columns = [3, *(c for c in depth_columns(coords) if c != 3)]
        if edit.like_version is not None:  # the children take their mix in that version
            summary = self._reference_summary(edit.like_version)
            return self._version_mix(cell, coords, rows, scale, columns, summary), columns
        reference: str = edit.like  # type: ignore[assignment]
        if columns is None:  # the children take the reference month's mix
            return self._reference_mix(coords, rows, reference, scale), columns
        # its months take the reference period's months' mix
        return self._months_mix(cell, rows, reference, scale, columns), columns

    def _like(
        self,
        coords: tuple[Any, ...],
        rows: np.ndarray,
        units: np.ndarray,
        held: np.ndarray,
        target: int,
        mix: dict[int, int],
        columns: list[int] | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`like` over numpy columns (apportion.like): the free rows' positions and new
        units; None when the pure rule must decide (it also words the refusals)."""
        order, path = self._path_order(coords, rows, columns)
        try:
            liked = like(path, units[order], held[order], mix, target)
        except Overflow as exc:
            raise OutOfRange("spreading this value would overflow a sales row") from exc
        if liked is None:
            return None
        free, new_units = liked
        return rows[order][free], new_units

    def _path_order(
        self,
        coords: tuple[Any, ...],
        rows: np.ndarray,
        columns: list[int] | None = None,
        indexed: PathRows | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The rows below a cell in path order, then sale_id (`order` indexes `rows`), and
        per depth below the cell each of them's group, in that order. When `rows` are
        all of `indexed`'s (taken from it in its order, none left out), that order is
        theirs already: no sort."""
        if indexed is not None and columns is None and len(rows) == len(indexed.rows):
            return np.arange(len(rows)), indexed.groups
        nodes, local = np.unique(self.state.row_node[rows], return_inverse=True)
        rank, groups = self._path_ranks(coords, nodes, columns)
        order = np.lexsort((rows, rank[local]))
        local = local[order]
        return order, [group[local] for group in groups]

    def _path_ranks(
        self, coords: tuple[Any, ...], nodes: np.ndarray, columns: list[int] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """For the distinct `nodes` below a cell: each node's rank in path order, and per
        depth below the cell each node's group (numbered in path order). `columns`: the
        coordinates of the path, top down (default: the cell's depth_columns)."""
        columns = depth_columns(coords) if columns is None else columns
        paths = [tuple(self.state.nodes[k][c] for c in columns) for k in nodes.tolist()]
        order = sorted(range(len(paths)), key=paths.__getitem__)
        rank = np.empty(len(paths), dtype=np.int64)
        rank[order] = np.arange(len(paths))
        groups = []
        for depth in range(len(columns)):
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
        self,
        coords: tuple[Any, ...],
        free: np.ndarray,
        weights: np.ndarray,
        amount: int,
        indexed: PathRows | None = None,
    ) -> np.ndarray:
        """New units of the free rows (in the order given)."""
        order, path = self._path_order(coords, free, None, indexed)
        try:
            shares = proportional(path, weights[order], amount)
        except Overflow as exc:
            raise OutOfRange("spreading this value would overflow a sales row") from exc
        out = np.empty_like(shares)
        out[order] = shares
        return out

    def _reference_mix(
        self, coords: tuple[Any, ...], rows: np.ndarray, month: str, scale: int
    ) -> dict[int, int]:
        """For `like`: each child of the cell (by its group number at depth 0, as
        `_leaves` numbers them) -> that child's value in `month`."""
        below = depth_columns(coords)
        if not below:
            return {}  # a family-month: no children (spread_like says so)
        column, level = below[0], CHILD_LEVEL[len(below) - 1]

        def child_in_month(node: Node) -> Cell:
            child = list(coords[:3])
            child[column] = node[column]
            return (*child, month, level)  # type: ignore[return-value]

        return self._mix(coords, rows, scale, None, child_in_month)

    def _months_mix(
        self,
        cell: dict[str, Any],
        rows: np.ndarray,
        reference: str,
        scale: int,
        columns: list[int],
    ) -> dict[int, int]:
        """For `like` on a quarter or year: each month of it (by its group number at
        depth 0 of `columns`) -> the cell's node's value in the reference period's month
        at the same place (January for January, the quarter's second for its second)."""
        coords = coords_of(cell)
        aligned = dict(
            zip(
                sorted(period_months(cell["period"])),  # type: ignore[arg-type]
                sorted(period_months(reference)),  # type: ignore[arg-type]
                strict=True,
            )
        )

        def same_place(node: Node) -> Cell:
            return (*coords[:3], aligned[node[3]], cell["level"])  # type: ignore[return-value]

        return self._mix(coords, rows, scale, columns, same_place)

    def _reference_summary(self, version: str) -> dict[Cell, Totals]:
        """The summary of the version a `like` spread takes its mix from."""
        if version == self.version:
            raise ProtocolError("cannot_spread_like", "spread 'like' takes another version's mix")
        state = self.reference_state(version)
        if state is None:
            raise ProtocolError("unknown_version", f"there is no version {version!r}")
        return state.summary

    def _version_mix(
        self,
        cell: dict[str, Any],
        coords: tuple[Any, ...],
        rows: np.ndarray,
        scale: int,
        columns: list[int] | None,
        summary: dict[Cell, Totals],
    ) -> dict[int, int]:
        """For `like` another version: each child of the cell (its months for a quarter
        or year, else the next level down, or the months of an all-months cell) -> the
        same child's value in that version."""
        below = columns or depth_columns(coords)
        if not below:
            return {}  # a family-month: no children (spread_like says so)
        column = below[0]
        open_levels = [c for c in below if c != 3]
        level = cell["level"] if column == 3 else CHILD_LEVEL[len(open_levels) - 1]

        def same_child(node: Node) -> Cell:
            child = list(coords[:4])
            child[column] = node[column]
            return (*child, level)  # type: ignore[return-value]

        return self._mix(coords, rows, scale, columns, same_child, summary)

    def _mix(
        self,
        coords: tuple[Any, ...],
        rows: np.ndarray,
        scale: int,
        columns: list[int] | None,
        reference_of: Callable[[Node], Cell],
        summary: dict[Cell, Totals] | None = None,
    ) -> dict[int, int]:
        """Each depth-0 group of the rows' nodes -> the value of its reference cell (in
        `summary`, by default this version's)."""
        state = self.state
        summary = state.summary if summary is None else summary
        nodes = np.unique(state.row_node[rows])
        _, groups = self._path_ranks(coords, nodes, columns)
        measure = 1 if scale == 100 else 0
        mix: dict[int, int] = {}
        for node, group in zip(nodes.tolist(), groups[0].tolist(), strict=True):
            value = summary.get(reference_of(state.nodes[node]))
            mix[group] = value[measure] if value else 0
        return mix

    def _leaves(
        self,
        coords: tuple[Any, ...],
        rows: np.ndarray,
        units: np.ndarray,
        held: np.ndarray,
        columns: list[int] | None = None,
    ) -> list[spreading.Leaf]:
        """The rows below a cell as spread leaves, ordered by (path, sale_id)."""
        order, path = self._path_order(coords, rows, columns)
        sale_ids = self.state.sales.sale_id
        return [
            spreading.Leaf(
                int(sale_ids[rows[j]]),
                tuple(int(level[i]) for level in path),
                int(units[j]),
                bool(held[j]),
            )
            for i, j in enumerate(order.tolist())
        ]


def depth_columns(coords: tuple[Any, ...]) -> list[int]:
    """The coordinates below a cell, top down: the hierarchy levels it leaves open,
    then the month when it is an all-months cell."""
    columns = [i for i, name in enumerate(HIERARCHY) if coords[i] is None]
    if coords[3] is None:
        columns.append(3)
    return columns


def target_units(value: Any, scale: int) -> int:
    return int(Decimal(str(value)) * scale)


def _shown_units(units: int, scale: int) -> str | int:
    return str(Decimal(units) / scale) if scale != 1 else units
