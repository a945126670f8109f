"""Editing a summary cell: its new value is spread over the free sales rows below it
(proportionally in SQL for the common case, by protocol.spread otherwise), and the
summary moves by the change at once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from protocol import spread as spreading
from protocol.catalog import HIERARCHY
from protocol.edits import Edit
from protocol.errors import ProtocolError
from protocol.rollup import Delta, Node, roll_up
from server.writer.batch import Batch, Conn
from server.writer.holds import held_flag_sql, reject_if_held
from server.writer.ranges import check_shares
from server.writer.upkeep import apply_cell_deltas

# A spread's change of units per family-month node, from `_cell` and `_new`.
SPREAD_DELTA = """
    SELECT c.supplier, c.brand, c.family, c.month, SUM(n.new_units - n.old_units)
    FROM _cell c JOIN _new n USING (sale_id)
    WHERE n.new_units <> n.old_units
    GROUP BY ALL
"""


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
        # The common case stays in SQL: the same largest-remainder rule as protocol.spread.
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
