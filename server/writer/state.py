"""The writer's working state: everything it needs to decide interactive requests in
memory (DESIGN §1), loaded from DuckDB at start and changed only by deciding.

Sales rows live in numpy columns in sale_id order (about 40 bytes a row); each row
knows its family-month node, and nodes index their rows (a CSR list built at load,
plus the rows that moved node since). Summary cells are kept in integer units
(cents, pieces), holds as the cells they name.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import duckdb
import numpy as np

from protocol.catalog import CELL_COORDINATES, SUMMARY
from protocol.rollup import Cell, Node

Conn = duckdb.DuckDBPyConnection
Coords = tuple[str | None, str | None, str | None, str | None]  # supplier, brand, family, month
# a summary cell's (quantity, cents, line_count): a tuple, which the garbage collector
# stops tracking (lists of 100,000 edited cells made every full collection ~30 ms)
Totals = tuple[int, int, int]
EPOCH = dt.date(1970, 1, 1)
NO_NODE = -1  # a sales row whose product is missing counts in no summary cell
REINDEX_AFTER = 20_000  # moved rows before the node index is rebuilt
KEY_MASK_MAX = 1 << 24  # family-months marked in a mask at load; past it, sorted
PRODUCT_TABLE_MAX = 1 << 20  # product ids looked up in a table at load; past it, searched
CHILD_LEVELS = (3, 1, 0)  # the level of a cell's children, by its hierarchy depth
SALES_COLUMNS = ("sale_id", "invoice_date", "product_id", "customer_id", "quantity", "net_price")


def month_of(days: int) -> str:
    date = EPOCH + dt.timedelta(days=int(days))
    return f"{date.year:04d}-{date.month:02d}"


def patterns(node: Node) -> list[Coords]:
    """The coordinates of the eight summary cells a family-month node counts in."""
    supplier, brand, family, month = node
    out: list[Coords] = []
    for m in (month, None):
        out += [
            (supplier, brand, family, m),
            (supplier, brand, None, m),
            (supplier, None, None, m),
            (None, None, None, m),
        ]
    return out


@dataclass
class Hold:
    level: int
    by: str
    at: dt.datetime


@dataclass
class Sales:
    """The sales rows as columns; position i is the i-th row in sale_id order."""

    sale_id: np.ndarray  # int64, ascending
    invoice_date: np.ndarray  # int32 days since 1970-01-01
    product_id: np.ndarray  # int32
    customer_id: np.ndarray  # int32
    quantity: np.ndarray  # int64 pieces
    cents: np.ndarray  # int64: net_price * 100

    def position(self, sale_id: int) -> int | None:
        ids = self.sale_id
        if not len(ids):
            return None
        i = sale_id - int(ids[0])  # where it is when the ids have no gaps up to it
        if not 0 <= i < len(ids) or int(ids[i]) != sale_id:
            i = int(ids.searchsorted(sale_id))
        if i < len(ids) and int(ids[i]) == sale_id:
            return i
        return None

    def row(self, i: int) -> dict[str, Any]:
        """Row i as DuckDB returns it (net_price Decimal, invoice_date a date)."""
        return {
            "sale_id": int(self.sale_id[i]),
            "invoice_date": EPOCH + dt.timedelta(days=int(self.invoice_date[i])),
            "product_id": int(self.product_id[i]),
            "customer_id": int(self.customer_id[i]),
            "quantity": int(self.quantity[i]),
            "net_price": Decimal(int(self.cents[i])).scaleb(-2),
        }

    def column(self, name: str) -> np.ndarray:
        return self.cents if name == "net_price" else getattr(self, name)


@dataclass(frozen=True)
class PathRows:
    """Rows below several cells, as `State.cells_in_path_order` gathers them."""

    rows: np.ndarray  # positions, cell after cell, each cell's rows in path order
    cell: np.ndarray  # per row, the index of its cell
    groups: list[np.ndarray]  # per depth below the cells, each row's group (across cells)
    node: np.ndarray  # per row, its node


@dataclass
class State:
    sales: Sales
    row_node: np.ndarray  # int32 node of each row, NO_NODE without a product
    nodes: list[Node]
    node_ids: dict[Node, int]
    under: dict[Coords, list[int]]  # nodes below each summary cell
    products: dict[int, tuple[str, str, str]]
    customers: set[int]
    # cell -> (quantity, cents, line_count); a value is replaced, never changed, so a
    # request's before-image, its step and the persister share them
    summary: dict[Cell, Totals]
    holds: dict[Coords, Hold]
    applied: str | None  # the last request id DuckDB holds the effects of
    writers: dict[Cell, tuple[str, dt.datetime]] = field(default_factory=dict)  # changed by, at
    held_nodes: np.ndarray = field(init=False)  # bool per node: below some hold
    _order: np.ndarray = field(init=False)  # row positions sorted by node
    _starts: np.ndarray = field(init=False)  # _order[_starts[k]:_starts[k+1]]: rows of node k
    _moved: set[int] = field(default_factory=set)  # rows whose node changed since indexing
    # cell -> its nodes in path order and their group at each depth below it
    _paths: dict[Coords, tuple[list[int], list[np.ndarray]]] = field(default_factory=dict)
    # month cell -> the cells one level down its nodes count in (child_cells), as (coords, cell)
    _children: dict[Coords, list[tuple[Coords, Cell]]] = field(default_factory=dict)
    _node_cells: dict[int, tuple[Cell, ...]] = field(default_factory=dict)  # see cells_of
    # every cell some node counts in, numbered; per node the numbers of its eight cells
    # (-1: not yet numbered), so a change of many nodes sums into cells in numpy
    _cell_keys: list[Cell] = field(default_factory=list)
    _cell_numbers: dict[Cell, int] = field(default_factory=dict)
    _node_cell_numbers: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._index_rows()
        self.refresh_holds()
        self._node_cell_numbers = np.full((len(self.nodes), 8), -1, dtype=np.int64)

    # --- nodes and rows ---------------------------------------------------------

    def _index_rows(self) -> None:
        self._order = np.argsort(self.row_node, kind="stable").astype(np.int32)
        sorted_nodes = self.row_node[self._order]
        self._starts = np.searchsorted(sorted_nodes, np.arange(len(self.nodes) + 1))
        self._moved = set()

    def node_of(self, product_id: int, days: int) -> int:
        """The node of a row with this product and date (created when new)."""
        hierarchy = self.products.get(product_id)
        if hierarchy is None:
            return NO_NODE
        node = (*hierarchy, month_of(days))
        found = self.node_ids.get(node)  # type: ignore[arg-type]
        return found if found is not None else self._add_node(node)  # type: ignore[arg-type]

    def _add_node(self, node: Node) -> int:
        self._paths.clear()
        self._children.clear()
        k = len(self.nodes)
        self.nodes.append(node)
        self.node_ids[node] = k
        for coords in patterns(node):
            self.under.setdefault(coords, []).append(k)
        self._starts = np.append(self._starts, self._starts[-1])  # no indexed rows yet
        held = any(c in self.holds for c in patterns(node))
        self.held_nodes = np.append(self.held_nodes, held)
        self._node_cell_numbers = np.vstack([self._node_cell_numbers, np.full((1, 8), -1)])
        return k

    def move_row(self, i: int, node: int) -> None:
        self.row_node[i] = node
        self._moved.add(i)
        if len(self._moved) > REINDEX_AFTER:
            self._index_rows()

    def rows_below(self, coords: Coords, months: frozenset[str] | None = None) -> np.ndarray:
        """Positions (ascending) of the rows below a summary cell; with `months`, of the
        rows of those months only (a quarter or year of an all-months cell)."""
        node_list = self.under.get(coords, [])
        if months is not None:
            node_list = [k for k in node_list if self.nodes[k][3] in months]
        if not node_list:
            return np.empty(0, dtype=np.int64)
        parts = [self._order[self._starts[k] : self._starts[k + 1]] for k in node_list]
        if self._moved:
            parts.append(np.fromiter(self._moved, dtype=np.int32, count=len(self._moved)))
        rows = np.concatenate(parts).astype(np.int64)
        if self._moved:
            wanted = np.zeros(len(self.nodes) + 1, dtype=bool)  # the last slot: NO_NODE
            wanted[node_list] = True
            rows = np.unique(rows[wanted[self.row_node[rows]]])
        else:
            rows.sort()
        return rows

    def cells_in_path_order(self, cells: list[Coords]) -> PathRows | None:
        """The rows below each of `cells` (of one shape), cell after cell, each cell's
        rows in path order (the nodes' paths below it, then sale_id); None while rows
        moved node since the index was built (then callers sort themselves). One
        gather for all of them: a paste names thousands of cells."""
        if self._moved:
            return None
        paths = [
            self._paths.get(c) or self._paths.setdefault(c, self._path_groups(c)) for c in cells
        ]
        nodes = np.fromiter(itertools.chain.from_iterable(p[0] for p in paths), dtype=np.int64)
        per_cell = np.fromiter((len(p[0]) for p in paths), dtype=np.int64, count=len(paths))
        starts = self._starts[nodes]
        lengths = self._starts[nodes + 1] - starts
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        rows = self._order[np.arange(total) + np.repeat(starts - (ends - lengths), lengths)]
        node_cell = np.repeat(np.arange(len(cells)), per_cell)
        groups = []
        for depth in range(len(paths[0][1]) if paths else 0):
            numbered = [p[1][depth] for p in paths]
            counts = [int(g[-1]) + 1 if len(g) else 0 for g in numbered]
            offsets = np.cumsum(counts) - counts
            node_groups = np.concatenate(numbered) + offsets[node_cell]
            groups.append(np.repeat(node_groups, lengths))
        return PathRows(
            rows.astype(np.int64),
            np.repeat(node_cell, lengths),
            groups,
            np.repeat(nodes.astype(np.int32), lengths),
        )

    def _path_groups(self, coords: Coords) -> tuple[list[int], list[np.ndarray]]:
        depth_columns = [i for i in range(3) if coords[i] is None]
        if coords[3] is None:
            depth_columns.append(3)
        paths = {
            k: tuple(self.nodes[k][c] for c in depth_columns) for k in self.under.get(coords, [])
        }
        nodes = sorted(paths, key=paths.__getitem__)
        groups = []
        for depth in range(len(depth_columns)):
            prefixes = [paths[k][: depth + 1] for k in nodes]
            changes = [0] + [int(a != b) for a, b in itertools.pairwise(prefixes)]
            groups.append(np.cumsum(changes, dtype=np.int64))
        return nodes, groups

    def child_cells(self, coords: Coords) -> list[Coords]:
        """The cells one level down from a month cell (a brand's families, a supplier's
        brands, the total's suppliers) that have rows; none for a family."""
        depth = sum(c is not None for c in coords[:3])
        if depth == 3:
            return []
        found = self._children.get(coords)
        if found is None:
            level = CHILD_LEVELS[depth]
            prefixes = sorted({self.nodes[k][: depth + 1] for k in self.under.get(coords, ())})
            children = [(*prefix, *(None,) * (2 - depth), coords[3]) for prefix in prefixes]
            found = self._children[coords] = [(c, (*c, level)) for c in children]  # type: ignore[misc]
        summary = self.summary
        return [child for child, cell in found if cell in summary]

    def cells_of(self, node: int) -> tuple[Cell, ...]:
        """The eight cells a node's rows count in: its family, brand, supplier and the
        grand total, each by its month and over all months (what roll_up yields)."""
        found = self._node_cells.get(node)
        if found is None:
            supplier, brand, family, month = self.nodes[node]
            found = self._node_cells[node] = (
                (supplier, brand, family, month, 0),
                (supplier, brand, family, None, 0),
                (supplier, brand, None, month, 1),
                (supplier, brand, None, None, 1),
                (supplier, None, None, month, 3),
                (supplier, None, None, None, 3),
                (None, None, None, month, 7),
                (None, None, None, None, 7),
            )
        return found

    def cell_sums(self, nodes: np.ndarray, units: np.ndarray) -> dict[Cell, int]:
        """Per cell, the sum of `units` (float64 integers) over the distinct `nodes`
        counting in it (what roll_up gives for one measure), zero sums left out. Exact
        while the sum of |units| stays below 2**53."""
        numbers = self._node_cell_numbers
        unnumbered = nodes[numbers[nodes, 0] < 0]
        for node in unnumbered.tolist():
            numbers[node] = [self._cell_number(cell) for cell in self.cells_of(node)]
        cells = numbers[nodes].ravel()
        totals = np.bincount(cells, weights=np.repeat(units, 8))
        changed = np.flatnonzero(totals)
        keys, sums = self._cell_keys, totals[changed].astype(np.int64).tolist()
        return {keys[i]: total for i, total in zip(changed.tolist(), sums, strict=True)}

    def _cell_number(self, cell: Cell) -> int:
        found = self._cell_numbers.get(cell)
        if found is None:
            found = self._cell_numbers[cell] = len(self._cell_keys)
            self._cell_keys.append(cell)
        return found

    # --- holds --------------------------------------------------------------------

    def refresh_holds(self) -> None:
        held = np.zeros(len(self.nodes), dtype=bool)
        for coords in self.holds:
            held[self.under.get(coords, [])] = True
        self.held_nodes = held

    def node_held(self, node: int) -> bool:
        return node != NO_NODE and bool(self.held_nodes[node])

    def holds_list(self) -> list[dict[str, Any]]:
        """The holds as GET /holds and snapshots list them."""
        ordered = sorted(
            self.holds.items(),
            key=lambda item: (
                -item[1].level,
                *((v is None, v or "") for v in item[0][:3]),
                item[0][3] is None,
                item[0][3] or "",
            ),
        )
        return [
            {**dict(zip(CELL_COORDINATES, coords, strict=True)), "level": h.level, "by": h.by}
            for coords, h in ordered
        ]

    def memory_bytes(self) -> int:
        arrays = [getattr(self.sales, name) for name in Sales.__dataclass_fields__]
        arrays += [self.row_node, self._order, self._starts, self.held_nodes]
        return sum(a.nbytes for a in arrays)


# a cell's coordinates (supplier, brand, family, month) from its condition; an
# itemgetter rather than a function: a block calls it thousands of times
coords_of = cast(Callable[[dict[str, Any]], Coords], operator.itemgetter(*CELL_COORDINATES))


def cents(column: str) -> str:
    """SQL: a DECIMAL(18, 2) column as BIGINT cents, in 64-bit arithmetic where the
    product fits (below 10^14, nearly always) and in 128 bits only past it (the whole
    column in 128 bits costs 100 ms of a 1M-row start)."""
    return (
        f"CASE WHEN abs({column}) < 100000000000000 THEN ({column} * 100)::BIGINT "
        f"ELSE ({column}::DECIMAL(38, 2) * 100)::BIGINT END"
    )


def load(con: Conn) -> State:
    """The working state as DuckDB holds it now (one read transaction)."""
    con.execute("BEGIN TRANSACTION")
    try:
        applied_row = con.execute("SELECT last_id FROM _applied").fetchone()
        products = {
            row[0]: tuple(row[1:])
            for row in con.execute(
                "SELECT product_id, supplier, brand, family FROM product"
            ).fetchall()
        }
        customers = {row[0] for row in con.execute("SELECT customer_id FROM customer").fetchall()}
        columns = con.execute(  # in stored order: sorting here doubled the load's peak
            f"""
            SELECT sale_id, (invoice_date - DATE '1970-01-01')::INTEGER AS days,
                   product_id, customer_id, quantity::BIGINT AS quantity,
                   {cents("net_price")} AS cents
            FROM sales
            """
        ).fetchnumpy()
        summary_rows = con.execute(
            f"SELECT supplier, brand, family, month, level, quantity::BIGINT, "
            f"{cents('net_amount')}, line_count, changed_by, changed_at FROM {SUMMARY}"
        ).fetchall()
        hold_rows = con.execute(
            "SELECT supplier, brand, family, month, level, held_by, held_at FROM holds"
        ).fetchall()
    finally:
        con.execute("COMMIT")
    sales = _in_id_order(columns)
    nodes, row_node = family_months(sales, products)  # type: ignore[arg-type]
    node_ids = {node: k for k, node in enumerate(nodes)}
    under: dict[Coords, list[int]] = {}
    for k, node in enumerate(nodes):
        for coords in patterns(node):
            under.setdefault(coords, []).append(k)
    return State(
        sales=sales,
        row_node=row_node,
        nodes=nodes,
        node_ids=node_ids,
        under=under,
        products=products,  # type: ignore[arg-type]
        customers=customers,
        summary={tuple(row[:5]): tuple(row[5:8]) for row in summary_rows},  # type: ignore[misc]
        holds={tuple(row[:4]): Hold(row[4], row[5], row[6]) for row in hold_rows},  # type: ignore[misc]
        applied=applied_row[0] if applied_row else None,
        writers={tuple(row[:5]): (row[8], row[9]) for row in summary_rows if row[8] is not None},  # type: ignore[misc]
    )


def _in_id_order(columns: dict[str, np.ndarray]) -> Sales:
    """The sales columns as `Sales`, sorted by sale_id unless they already are (rows are
    stored in the order they were inserted, nearly always the ids' order)."""
    ids = np.ascontiguousarray(columns["sale_id"], dtype=np.int64)
    order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids, kind="stable")

    def column(name: str, dtype: type) -> np.ndarray:
        values = np.ascontiguousarray(columns[name], dtype=dtype)
        return values if order is None else values[order]

    return Sales(
        sale_id=ids if order is None else ids[order],
        invoice_date=column("days", np.int32),
        product_id=column("product_id", np.int32),
        customer_id=column("customer_id", np.int32),
        quantity=column("quantity", np.int64),
        cents=column("cents", np.int64),
    )


def family_months(
    sales: Sales, products: dict[int, tuple[str, str, str]]
) -> tuple[list[Node], np.ndarray]:
    """Every (supplier, brand, family, month) some row counts in, in that order, and each
    row's index into them (NO_NODE for a row whose product is missing). In numpy, as
    family rank * months + month: a SQL join and sort cost as much time and twice the
    columns' memory."""
    families = sorted(set(products.values()))
    rank = {family: k for k, family in enumerate(families)}
    family = _family_of_rows(sales.product_id, {p: rank[f] for p, f in products.items()})
    month = sales.invoice_date.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    known = family >= 0
    if not known.any():
        return [], np.full(len(family), NO_NODE, dtype=np.int32)
    month = month[known]
    first = int(month.min())
    span = int(month.max()) - first + 1
    keys = family[known] * span + (month - first)
    if len(families) * span <= KEY_MASK_MAX:
        present = np.zeros(len(families) * span, dtype=bool)
        present[keys] = True
        distinct = np.flatnonzero(present)
        inverse = (np.cumsum(present) - 1)[keys]
    else:  # dates spread over many centuries: sort the keys instead
        distinct, inverse = np.unique(keys, return_inverse=True)
    row_node = np.full(len(family), NO_NODE, dtype=np.int32)
    row_node[known] = inverse
    nodes = [(*families[int(k) // span], _month_name(first + int(k) % span)) for k in distinct]
    return nodes, row_node  # type: ignore[return-value]


def _family_of_rows(product_ids: np.ndarray, family_of: dict[int, int]) -> np.ndarray:
    """Each row's family rank by its product_id (-1: no such product)."""
    out = np.full(len(product_ids), -1, dtype=np.int64)
    if not family_of:
        return out
    ids = np.array(sorted(family_of), dtype=np.int64)
    ranks = np.array([family_of[p] for p in ids.tolist()], dtype=np.int64)
    if ids[0] >= 0 and ids[-1] < PRODUCT_TABLE_MAX:  # a direct table: no search per row
        table = np.full(int(ids[-1]) + 1, -1, dtype=np.int64)
        table[ids] = ranks
        inside = (product_ids >= 0) & (product_ids <= ids[-1])
        out[inside] = table[product_ids[inside]]
        return out
    at = np.minimum(np.searchsorted(ids, product_ids), len(ids) - 1)
    found = ids[at] == product_ids
    out[found] = ranks[at[found]]
    return out


def _month_name(months_since_1970: int) -> str:
    year, month = divmod(months_since_1970, 12)
    return f"{1970 + year:04d}-{month + 1:02d}"
