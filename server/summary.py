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
from server.batch import SALES_NODE, Batch, Conn
from server.holds import held_flag_sql, reject_if_held

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
    # The rows below the cell, read once: they feed the spread and the before-image.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cell AS
        SELECT s.sale_id, {SALES_NODE}
        FROM sales s JOIN product p USING (product_id)
        WHERE {filter_sql}
        """,
        params,
    )
    scale = 100 if edit.column == "net_amount" else 1
    leaves = _leaves(con, cell, edit.column, edit.spread == "equal", batch)
    if edit.expect is not None:
        current = sum(leaf.value for leaf in leaves)
        if current != _units(edit.expect, scale):
            shown = _shown(current, scale)
            raise ProtocolError(
                "conflict", f"the cell is {shown}, not the expected {edit.expect}", current=shown
            )
    free = [leaf for leaf in leaves if not leaf.held]
    if edit.spread == "proportional" and free and not any(leaf.value for leaf in free):
        leaves = _leaves(con, cell, edit.column, True, batch)  # all zero: equal it is
    new_values = spreading.spread(leaves, _units(edit.value, scale), edit.spread)
    changed = [
        (leaf.key, new_values[leaf.key])
        for leaf in leaves
        if new_values.get(leaf.key, leaf.value) != leaf.value
    ]
    if not changed:
        return
    con.execute(
        "INSERT INTO _before SELECT * FROM _cell WHERE sale_id NOT IN (SELECT sale_id FROM _before)"
    )
    if edit.column == "net_amount":
        assignment = "net_price = v.units::DECIMAL(18, 0) * 0.01"
    else:
        assignment = "quantity = v.units::INTEGER"
    con.execute(
        f"""
        UPDATE sales SET {assignment}
        FROM (SELECT unnest(?::BIGINT[]) AS sale_id, unnest(?::BIGINT[]) AS units) v
        WHERE sales.sale_id = v.sale_id
        """,
        [[key for key, _ in changed], [value for _, value in changed]],
    )


def _leaves(
    con: Conn, cell: dict[str, Any], column: str, with_paths: bool, batch: Batch
) -> list[spreading.Leaf]:
    """The rows of `_cell` as spread leaves in integer units, ordered by (path, sale_id).
    Paths (the child node at each level below the cell) are read only for equal spreads."""
    units = "CAST(net_price * 100 AS BIGINT)" if column == "net_amount" else "quantity"
    held = held_flag_sql(batch)
    path = [c for c in HIERARCHY if cell[c] is None]
    if cell["month"] is None:
        path.append("month")
    if not with_paths or not path:
        rows = con.execute(
            f"SELECT sale_id, {units}, {held} FROM _cell n ORDER BY sale_id"
        ).fetchall()
        return [spreading.Leaf(key, (), value, flag) for key, value, flag in rows]
    columns = ", ".join(path)
    rows = con.execute(
        f"SELECT sale_id, {units}, [{columns}], {held} FROM _cell n ORDER BY {columns}, sale_id"
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


def _units(value: Any, scale: int) -> int:
    return int(Decimal(str(value)) * scale)


def _shown(units: int, scale: int) -> str | int:
    return str(Decimal(units) / scale) if scale != 1 else units


def update_summary(con: Conn) -> list[dict[str, Any]]:
    """Move the summary by the net change of the rows in `_before`; return changed cells."""
    if not con.execute("SELECT count(*) FROM _before").fetchone()[0]:  # type: ignore[index]
        return []
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _node_delta AS
        WITH leaf_delta AS (
            SELECT supplier, brand, family, month,
                   -quantity AS dq, -net_price AS dn, -1 AS dc
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
    )
    con.execute(
        f"""
        MERGE INTO {SUMMARY} t USING _node_delta d ON {SAME_CELL}
        WHEN MATCHED AND t.line_count + d.dc = 0 THEN DELETE
        WHEN MATCHED THEN UPDATE SET
            quantity = t.quantity + d.dq,
            net_amount = t.net_amount + d.dn,
            line_count = t.line_count + d.dc
        WHEN NOT MATCHED THEN INSERT VALUES
            (d.supplier, d.brand, d.family, d.month, d.level, d.dq, d.dn, d.dc)
        """
    )
    rows = con.execute(
        f"""
        SELECT d.supplier, d.brand, d.family, d.month, d.level, t.quantity, t.net_amount,
               t.level IS NULL AS deleted
        FROM _node_delta d LEFT JOIN {SUMMARY} t ON {SAME_CELL}
        ORDER BY d.level DESC, d.supplier, d.brand, d.family, d.month NULLS LAST
        """
    ).fetchall()
    return [summary_row(row[:7], deleted=row[7]) for row in rows]


def summary_row(values: tuple[Any, ...], deleted: bool = False) -> dict[str, Any]:
    row = dict(zip(SUMMARY_COLUMNS, values, strict=True))
    row["table"] = SUMMARY
    if deleted:
        row.update(quantity=0, net_amount=0, deleted=True)
    return row
