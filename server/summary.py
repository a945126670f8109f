"""The summary table: edits of its cells (spread down to the sales rows) and its upkeep
after every batch (moved by the net change of the rows the batch touched)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from protocol.catalog import HIERARCHY, SUMMARY
from protocol.edits import Edit
from protocol.errors import ProtocolError
from server import spread as spreading
from server.batch import SALES_NODE, Batch, Cell, Changes, Conn, Known, Measures, SummaryRow
from server.cells import Delta, Node, roll_up
from server.holds import held_flag_sql, reject_if_held
from server.ranges import check_cells, check_query, check_shares

SUMMARY_COLUMNS = ("supplier", "brand", "family", "month", "level", "quantity", "net_amount")
GROUPING_SETS = """
GROUPING SETS (
    (supplier, brand, family, month), (supplier, brand, family),
    (supplier, brand, month), (supplier, brand),
    (supplier, month), (supplier),
    (month), ()
)"""
SAME_CELL = " AND ".join(
    f"t.{c} IS NOT DISTINCT FROM d.{c}" for c in ("supplier", "brand", "family", "month", "level")
)


def apply_summary_edit(con: Conn, edit: Edit, batch: Batch) -> None:
    """Spread the new value of one cell over the free sales rows below it."""
    cell = edit.condition
    reject_if_held(con, cell, batch)
    filter_sql, params = _cell_filter(cell)
    # The rows below the cell, read once: they feed the spread, the before-image and
    # the changed rows shown to clients.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cell AS
        SELECT s.*, p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month
        FROM sales s JOIN product p USING (product_id)
        WHERE {filter_sql}
        """,
        params,
    )
    scale = 100 if edit.column == "net_amount" else 1
    units = "CAST(net_price * 100 AS BIGINT)" if edit.column == "net_amount" else "quantity"
    held = held_flag_sql(batch)
    held_units, free_units = con.execute(
        f"""
        SELECT coalesce(sum(u) FILTER (WHERE held), 0), coalesce(sum(u) FILTER (WHERE NOT held), 0)
        FROM (SELECT {units} AS u, {held} AS held FROM _cell n)
        """
    ).fetchone()  # type: ignore[misc]
    if edit.expect is not None and held_units + free_units != _units(edit.expect, scale):
        shown = _shown(held_units + free_units, scale)
        raise ProtocolError(
            "conflict", f"the cell is {shown}, not the expected {edit.expect}", current=shown
        )
    target = _units(edit.value, scale)
    if edit.spread == "proportional" and free_units != 0:
        # The common case stays in SQL: the same largest-remainder rule as server.spread.
        _spread_proportionally(con, units, held, target - held_units)
    else:
        # Equal spreads and the edge cases (no rows, all held, all zero, zero sum).
        leaves = _leaves(con, cell, units, held)
        new_values = spreading.spread(leaves, target, edit.spread)
        changes = [(leaf.key, leaf.value, new_values.get(leaf.key, leaf.value)) for leaf in leaves]
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _new AS
            SELECT unnest(?::BIGINT[]) AS sale_id, unnest(?::BIGINT[]) AS old_units,
                   unnest(?::BIGINT[]) AS new_units
            """,
            [list(column) for column in zip(*changes, strict=True)] if changes else [[], [], []],
        )
    _write_new_units(con, edit.column, batch)


def _spread_proportionally(con: Conn, units: str, held: str, amount: int) -> None:
    """Largest remainder over the free rows in (sale_id) order, in exact HUGEINT math:
    floor(amount * w / total) each, then one more unit to the largest remainders."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _new AS
        WITH free AS (
            SELECT sale_id, {units}::HUGEINT AS w FROM _cell n WHERE NOT ({held})
        ),
        shares AS (
            SELECT f.sale_id, f.w, f.w * sign(t.total) * $amount AS num, abs(t.total) AS den
            FROM free f, (SELECT sum(w) AS total FROM free) t
        ),
        floored AS (
            SELECT sale_id, w, (num - ((num % den) + den) % den) // den AS part,
                   ((num % den) + den) % den AS remainder
            FROM shares
        ),
        ranked AS (
            SELECT sale_id, w, part,
                   row_number() OVER (ORDER BY remainder DESC, sale_id) AS rank,
                   $amount - sum(part) OVER () AS left_over
            FROM floored
        )
        SELECT sale_id, w::BIGINT AS old_units,
               (part + CASE WHEN rank <= left_over THEN 1 ELSE 0 END)::BIGINT AS new_units
        FROM ranked
        """,
        {"amount": amount},
    )


def _write_new_units(con: Conn, column: str, batch: Batch) -> None:
    """Apply `_new` (sale_id, old_units, new_units) to the sales rows that change."""
    changed = "SELECT sale_id FROM _new WHERE new_units <> old_units"
    low, high = con.execute(
        "SELECT min(new_units), max(new_units) FROM _new WHERE new_units <> old_units"
    ).fetchone()  # type: ignore[misc]
    check_shares("net_price" if column == "net_amount" else column, low, high, SCALES[column])
    if column == "net_amount":
        name, value = "net_price", "(n.new_units::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2)"
    else:
        name, value = "quantity", "n.new_units::INTEGER"
    # The changed rows as they will be; the first ones by sale_id are all clients may see.
    cursor = con.execute(
        f"""
        SELECT c.* EXCLUDE (supplier, brand, family, month) REPLACE ({value} AS {name})
        FROM _cell c JOIN _new n USING (sale_id)
        WHERE n.new_units <> n.old_units
        ORDER BY sale_id LIMIT ?
        """,
        [batch.limits.base_rows_broadcast + 1],
    )
    names = [d[0] for d in cursor.description]
    first = cursor.fetchall()
    if not first:
        return
    if batch.before_pending:
        # Rows an earlier request may have changed too: settle them all at the end.
        con.execute(
            f"""
            INSERT INTO _before
            SELECT sale_id, supplier, brand, family, month, quantity, net_price FROM _cell
            WHERE sale_id IN ({changed}) AND sale_id NOT IN (SELECT sale_id FROM _before)
            """
        )
    else:
        _settle_spread(con, column, batch)
        batch.sales_rows.update({row[0]: dict(zip(names, row, strict=True)) for row in first})
    con.execute(
        f"""
        UPDATE sales SET {name} = {value}
        FROM (SELECT sale_id, new_units FROM _new WHERE new_units <> old_units) n
        WHERE sales.sale_id = n.sale_id
        """
    )


def _settle_spread(con: Conn, column: str, batch: Batch) -> None:
    """Move the summary by a spread's change at once: its rows stay in their nodes, so
    the change per cell is the sum of (new - old) units of the rows below it. (Summed per
    node in SQL, rolled up in Python: GROUPING SETS costs more for so few rows.)"""
    nodes: dict[Node, Delta] = {}
    for supplier, brand, family, month, units in con.execute(SPREAD_DELTA).fetchall():
        node = (supplier, brand, family, month)
        if column == "net_amount":
            nodes[node] = [0, Decimal(units).scaleb(-2), 0]  # exact cents
        else:
            nodes[node] = [units, 0, 0]
    apply_cell_deltas(con, roll_up(nodes), batch)


def _leaves(con: Conn, cell: dict[str, Any], units: str, held: str) -> list[spreading.Leaf]:
    """The rows of `_cell` as spread leaves in integer units, ordered by (path, sale_id),
    where the path names the child node at each level below the cell."""
    path = [c for c in HIERARCHY if cell[c] is None]
    if cell["month"] is None:
        path.append("month")
    columns = ", ".join(path)
    rows = con.execute(
        f"SELECT sale_id, {units}, [{columns}], {held} FROM _cell n "
        f"ORDER BY {columns + ', ' if path else ''}sale_id"
    ).fetchall()
    return [spreading.Leaf(key, tuple(p), value, flag) for key, value, p, flag in rows]


def _cell_filter(cell: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses = ["TRUE"]
    params: list[Any] = []
    for name in HIERARCHY:
        if cell[name] is not None:
            clauses.append(f"p.{name} = ?")
            params.append(cell[name])
    if cell["month"] is not None:
        first = dt.date.fromisoformat(cell["month"] + "-01")
        after = (first + dt.timedelta(days=32)).replace(day=1)
        clauses.append("s.invoice_date >= ? AND s.invoice_date < ?")
        params += [first, after]
    return " AND ".join(clauses), params


SCALES = {"net_amount": 100, "quantity": 1}  # units of a summary measure: cents, pieces


def _units(value: Any, scale: int) -> int:
    return int(Decimal(str(value)) * scale)


def _shown(units: int, scale: int) -> str | int:
    return str(Decimal(units) / scale) if scale != 1 else units


# The net change of the rows in `_before`, per summary cell (only cells that change).
NODE_DELTA = f"""
    WITH leaf_delta AS (
        SELECT supplier, brand, family, month, -quantity AS dq, -net_price AS dn, -1 AS dc
        FROM _before
        UNION ALL
        SELECT {SALES_NODE}, 1
        FROM sales s JOIN product p USING (product_id)
        WHERE s.sale_id IN (SELECT sale_id FROM _before)
    )
    SELECT supplier, brand, family, month,
           GROUPING_ID(supplier, brand, family)::INTEGER AS level,
           SUM(dq)::BIGINT AS dq, SUM(dn)::DECIMAL(18, 2) AS dn, SUM(dc)::BIGINT AS dc
    FROM leaf_delta
    GROUP BY {GROUPING_SETS}
    HAVING SUM(dq) <> 0 OR SUM(dn) <> 0 OR SUM(dc) <> 0
"""
# A spread's change of units per family-month node, from `_cell` and `_new`.
SPREAD_DELTA = """
    SELECT c.supplier, c.brand, c.family, c.month, SUM(n.new_units - n.old_units)
    FROM _cell c JOIN _new n USING (sale_id)
    WHERE n.new_units <> n.old_units
    GROUP BY ALL
"""
# Per-cell deltas computed in Python (server.leaf), as parameters.
GIVEN_DELTA = """
    SELECT unnest($supplier::VARCHAR[]) AS supplier, unnest($brand::VARCHAR[]) AS brand,
           unnest($family::VARCHAR[]) AS family, unnest($month::VARCHAR[]) AS month,
           unnest($level::INTEGER[]) AS level, unnest($dq::BIGINT[]) AS dq,
           unnest($dn::DECIMAL(18, 2)[]) AS dn, unnest($dc::BIGINT[]) AS dc
"""
CHANGED = """t.supplier, t.brand, t.family, t.month, t.level, t.quantity, t.net_amount,
    t.line_count, t.cell_id"""
MOVE_CELLS = f"""
    MERGE INTO {SUMMARY} t USING ({{source}}) d ON {SAME_CELL}
    WHEN MATCHED AND t.line_count + d.dc = 0 THEN DELETE
    WHEN MATCHED THEN UPDATE SET
        quantity = t.quantity + d.dq,
        net_amount = t.net_amount + d.dn,
        line_count = t.line_count + d.dc
    WHEN NOT MATCHED THEN INSERT
        (supplier, brand, family, month, level, quantity, net_amount, line_count)
        VALUES (d.supplier, d.brand, d.family, d.month, d.level, d.dq, d.dn, d.dc)
    RETURNING {CHANGED}, merge_action
"""


# The largest |quantity| and |net_amount| of the cells MOVE_CELLS would leave.
RANGE_AFTER_MOVE = f"""
    SELECT max(abs(coalesce(t.quantity, 0) + d.dq)), max(abs(coalesce(t.net_amount, 0) + d.dn))
    FROM ({NODE_DELTA}) d LEFT JOIN {SUMMARY} t ON {SAME_CELL}
    WHERE coalesce(t.line_count, 0) + d.dc <> 0
"""


def update_summary(con: Conn, batch: Batch | None = None) -> list[dict[str, Any]]:
    """Move the summary by the net change of the rows in `_before` (then empty it);
    return the cells the batch changed. `batch` knows whether anything is pending and
    what point edits changed; without it DuckDB is asked."""
    changes = batch.changes if batch is not None else Changes()
    if batch is not None:
        pending = batch.before_pending
    else:
        pending = bool(con.execute("SELECT count(*) FROM _before").fetchone()[0])  # type: ignore[index]
    if pending:
        check_query(con, RANGE_AFTER_MOVE)
        returned = con.execute(MOVE_CELLS.format(source=NODE_DELTA)).fetchall()
        changes.add(returned)
        if batch is not None:
            _remember(batch.known, returned)
        con.execute("DELETE FROM _before")
    if batch is not None:
        batch.before_pending = False
    return ordered(changes)


def apply_cell_deltas(con: Conn, deltas: dict[Cell, list[Any]], batch: Batch) -> None:
    """Add [quantity, net_amount, line_count] deltas to their cells, noting the change.
    Cells that exist and stay are set to their new measures, known from the writer's copy
    of the summary, by cell_id; a MERGE inserts new cells and deletes emptied ones."""
    live = {cell: delta for cell, delta in deltas.items() if any(delta)}
    if not live:
        return
    summary = summary_cells(con, batch.known)
    returned: list[tuple[Any, ...]] = []  # as MERGE ... RETURNING would give them
    keyed: list[tuple[Any, ...]] = []  # (cell_id, quantity, net_amount, line_count)
    others: dict[Cell, list[Any]] = {}
    for cell, (dq, dn, dc) in live.items():
        row = summary.get(cell)
        if row is None or row[3] + dc == 0:  # a new cell, or one that empties
            others[cell] = [dq, dn, dc]
            continue
        cell_id, quantity, net_amount, line_count = row
        now = (quantity + dq, net_amount + dn, line_count + dc)
        keyed.append((cell_id, *now))
        returned.append((*cell, *now, cell_id, "UPDATE"))
    check_cells([(row[1], row[2]) for row in keyed])
    check_cells([(dq, dn) for cell, (dq, dn, _) in others.items() if cell not in summary])
    if keyed:
        batch.known.update_rows(con, SUMMARY, KEYED_MEASURES, keyed)
    if others:
        returned += con.execute(MOVE_CELLS.format(source=GIVEN_DELTA), _params(others)).fetchall()
    batch.changes.add(returned, live)
    _remember(batch.known, returned)


KEYED_MEASURES = ("cell_id", "quantity", "net_amount", "line_count")


def summary_cells(con: Conn, known: Known) -> dict[Cell, SummaryRow]:
    """The writer's copy of the summary (read once; kept by _remember)."""
    if known.summary is None:
        rows = con.execute(
            f"SELECT supplier, brand, family, month, level, cell_id, quantity, net_amount, "
            f"line_count FROM {SUMMARY}"
        ).fetchall()
        known.summary = {row[:5]: row[5:] for row in rows}
    return known.summary


def _remember(known: Known, returned: list[tuple[Any, ...]]) -> None:
    """Keep the writer's copy of the summary as RETURNING rows say the cells are now."""
    if known.summary is None:
        return
    for row in returned:
        if row[9] == "DELETE":
            known.summary.pop(row[:5], None)
        else:
            known.summary[row[:5]] = (row[8], *row[5:8])


def _params(deltas: dict[Cell, list[Any]]) -> dict[str, list[Any]]:
    cells = list(deltas)
    params = {
        name: [cell[i] for cell in cells]
        for i, name in enumerate(("supplier", "brand", "family", "month", "level"))
    }
    params["dq"] = [delta[0] for delta in deltas.values()]
    params["dn"] = [f"{delta[1]:f}" for delta in deltas.values()]
    params["dc"] = [delta[2] for delta in deltas.values()]
    return params


def ordered(changes: Changes) -> list[dict[str, Any]]:
    """The changed cells as rows to send: by level (grand total first), then node, then
    month (all-months last); a cell that disappeared is sent as `deleted`."""

    def key(cell: Cell) -> tuple[Any, ...]:
        supplier, brand, family, month, level = cell
        return (-level, supplier or "", brand or "", family or "", month is None, month or "")

    def row(cell: Cell, measures: Measures | None) -> dict[str, Any]:
        if measures is None:
            return summary_row((*cell, 0, 0), deleted=True)
        return summary_row((*cell, *measures[:2]))

    changed = changes.changed()
    return [row(cell, changed[cell]) for cell in sorted(changed, key=key)]


def summary_row(values: tuple[Any, ...], deleted: bool = False) -> dict[str, Any]:
    row = dict(zip(SUMMARY_COLUMNS, values, strict=True))
    row["table"] = SUMMARY
    if deleted:
        row.update(quantity=0, net_amount=0, deleted=True)
    return row
