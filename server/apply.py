"""Apply a batch of validated edits to DuckDB in one transaction.

Every edit reads what it needs, checks it, then changes base rows with one UPDATE.
Before a sales row is first changed in a batch, its old node and measures are copied
to `_before`; at the end the summary is moved by (after - before) grouped by the same
grouping sets, so the summary stays exact while touching only the changed nodes.
The transaction also records each request's outcome, the last applied request id and
the outgoing payload (outbox), so a crash can never apply a request twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb

from protocol.catalog import HIERARCHY, SUMMARY, TABLES, Table
from protocol.codec import dumps_text
from protocol.edits import Edit
from protocol.errors import ProtocolError
from server import spread as spreading
from server.sql import cast_sql, ident, where

Conn = duckdb.DuckDBPyConnection

SALES_NODE = """
    p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month,
    s.quantity, s.net_price
"""
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
NO_SEQ = "0-0"  # the seq of a database no request has changed yet
SUMMARY_COLUMNS = ("supplier", "brand", "family", "month", "level", "quantity", "net_amount")
# Base-table columns whose change moves amounts between summary nodes.
SUMMARY_INPUTS = {
    "sales": {"invoice_date", "product_id", "quantity", "net_price"},
    "product": set(HIERARCHY),
}


@dataclass(frozen=True)
class Request:
    id: str  # request_duck stream id
    edit: Edit | None  # None only for a body that no longer parses (then it is in `failed`)
    user: str
    ref: str | None = None  # the edge's correlation id, echoed in the outcome


@dataclass
class Limits:
    max_rows_per_edit: int = 10_000
    base_rows_broadcast: int = 200


@dataclass
class _Batch:
    limits: Limits
    base_keys: dict[str, set[Any]] = field(default_factory=dict)  # product/customer keys


def prepare(con: Conn) -> None:
    """Session temp tables used by every batch (the writer's connection only)."""
    con.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS _before (
            sale_id BIGINT, supplier VARCHAR, brand VARCHAR, family VARCHAR, month VARCHAR,
            quantity INTEGER, net_price DECIMAL(18, 2)
        )"""
    )


def last_applied(con: Conn) -> str | None:
    row = con.execute("SELECT last_id FROM _applied").fetchone()
    return row[0] if row else None


def apply_batch(
    con: Conn,
    requests: list[Request],
    limits: Limits,
    failed: dict[str, ProtocolError] | None = None,
    published: list[str] | None = None,
) -> dict[str, Any]:
    """Apply `requests` in order in one transaction; return the response payload.

    Requests named in `failed` are recorded as rejected without being applied (used
    when a batch had to be split to isolate a request that makes DuckDB raise).
    `published` are outbox seqs confirmed in response_duck, deleted in this transaction.
    """
    seq = requests[-1].id
    batch = _Batch(limits)
    results: list[dict[str, Any]] = []
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM _before")
        for run in _runs(requests, failed or {}):
            for request, error in zip(run, _apply_run(con, run, batch, failed or {}), strict=True):
                results.append(_result(request, seq, error))
        rows = update_summary(con)
        base, truncated = changed_base_rows(con, batch)
        payload = {
            "seq": seq,
            "prev": last_applied(con) or NO_SEQ,  # the chain lets readers detect trimmed gaps
            "rows": rows,
            "base": base,
            "base_truncated": truncated,
            "holds": [],
            "by": sorted({r["user"] for r in results if r["status"] == "applied"}),
            "results": results,
        }
        _record(con, requests, results, seq, payload, published or [])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return payload


def _result(request: Request, seq: str, error: ProtocolError | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "request": request.id,
        "ref": request.ref,
        "user": request.user,
        "status": "applied" if error is None else "rejected",
    }
    if error is None:
        result["seq"] = seq
    else:
        result["error"] = error.as_dict()
    return result


def _record(
    con: Conn,
    requests: list[Request],
    results: list[dict[str, Any]],
    seq: str,
    payload: dict[str, Any],
    published: list[str],
) -> None:
    con.execute(
        """
        INSERT INTO request_log
        SELECT unnest($ids), $seq, unnest($statuses), unnest($codes), unnest($messages),
               unnest($users)
        """,
        {
            "ids": [r["request"] for r in results],
            "seq": seq,
            "statuses": [r["status"] for r in results],
            "codes": [r.get("error", {}).get("code") for r in results],
            "messages": [r.get("error", {}).get("message") for r in results],
            "users": [r["user"] for r in results],
        },
    )
    con.execute("INSERT OR REPLACE INTO _applied VALUES (TRUE, ?)", [seq])
    if published:
        con.execute("DELETE FROM _outbox WHERE list_contains(?, seq)", [published])
    con.execute(
        "INSERT OR REPLACE INTO _outbox VALUES (?, ?, ?)",
        [seq, [r.id for r in requests], dumps_text(payload)],
    )


# -- edits ---------------------------------------------------------------------------


def _is_point_edit(edit: Edit | None) -> bool:
    """An edit of one sales row by its key: these are batched together."""
    return (
        edit is not None
        and edit.table == "sales"
        and edit.expect is None
        and list(edit.condition) == ["sale_id"]
        and edit.condition["sale_id"] is not None
    )


def _runs(requests: list[Request], failed: dict[str, ProtocolError]) -> list[list[Request]]:
    """Consecutive point edits form one run; every other request is a run of its own."""
    runs: list[list[Request]] = []
    for request in requests:
        point = request.id not in failed and _is_point_edit(request.edit)
        if point and runs and _is_point_edit(runs[-1][0].edit) and runs[-1][0].id not in failed:
            runs[-1].append(request)
        else:
            runs.append([request])
    return runs


def _apply_run(
    con: Conn, run: list[Request], batch: _Batch, failed: dict[str, ProtocolError]
) -> list[ProtocolError | None]:
    first = run[0]
    if first.id in failed:
        return [failed[first.id]]
    if first.edit is None:
        return [ProtocolError("bad_message", "malformed request")]
    if _is_point_edit(first.edit):
        return apply_point_edits(con, [r.edit for r in run if r.edit is not None])
    try:
        apply_edit(con, first.edit, batch)
    except ProtocolError as exc:
        return [exc]
    return [None]


def apply_point_edits(con: Conn, edits: list[Edit]) -> list[ProtocolError | None]:
    """Many single-row sales edits with a handful of statements: the same result as
    applying them one by one (each sets a column of a row; the last one wins)."""
    ids = sorted({edit.condition["sale_id"] for edit in edits})
    existing = _existing(con, "sales", "sale_id", ids)
    known = {
        column: _existing(con, table, column, [e.value for e in edits if e.column == column])
        for column, table in (("product_id", "product"), ("customer_id", "customer"))
    }
    errors: list[ProtocolError | None] = []
    final: dict[str, dict[Any, Any]] = {}
    for edit in edits:
        sale_id = edit.condition["sale_id"]
        if sale_id not in existing:
            errors.append(ProtocolError("no_rows", f"there is no sale with sale_id {sale_id}"))
        elif edit.column in known and edit.value not in known[edit.column]:
            target = "product" if edit.column == "product_id" else "customer"
            errors.append(ProtocolError("unknown_reference", f"there is no {target} {edit.value}"))
        else:
            final.setdefault(edit.column, {})[sale_id] = edit.value
            errors.append(None)
    touched = sorted({sale_id for values in final.values() for sale_id in values})
    if touched:
        capture_before(con, "s.sale_id IN (SELECT unnest(?::BIGINT[]))", [touched])
    for column, values in final.items():
        set_values(con, TABLES["sales"], column, list(values), list(values.values()))
    return errors


def _existing(con: Conn, table: str, column: str, values: list[Any]) -> set[Any]:
    """Which of the integer `values` exist in table.column."""
    if not values:
        return set()
    rows = con.execute(
        f"SELECT {ident(column)} FROM {ident(table)} "
        f"WHERE {ident(column)} IN (SELECT unnest(?::BIGINT[]))",
        [sorted(set(values))],
    ).fetchall()
    return {row[0] for row in rows}


def set_values(con: Conn, table: Table, column: str, keys: list[Any], values: list[Any]) -> None:
    """UPDATE table SET column = value per key, in one statement."""
    key = table.key[0]
    value = cast_sql(table.columns[column], "v.value")
    con.execute(
        f"""
        UPDATE {ident(table.name)} SET {ident(column)} = {value}
        FROM (SELECT unnest(?) AS k, unnest(?::VARCHAR[]) AS value) v
        WHERE {ident(table.name)}.{ident(key)} = v.k
        """,
        [keys, [str(value) for value in values]],
    )


def apply_edit(con: Conn, edit: Edit, batch: _Batch) -> None:
    table = TABLES[edit.table]
    if table.summary:
        apply_summary_edit(con, edit)
    else:
        apply_base_edit(con, table, edit, batch)


def apply_base_edit(con: Conn, table: Table, edit: Edit, batch: _Batch) -> None:
    key = table.key[0]
    clause, params = where(table, edit.condition)
    keys = [
        row[0]
        for row in con.execute(
            f"SELECT {ident(key)} FROM {ident(table.name)} WHERE {clause} ORDER BY 1 LIMIT ?",
            [*params, batch.limits.max_rows_per_edit + 1],
        ).fetchall()
    ]
    if not keys:
        raise ProtocolError("no_rows", f"no row of {table.name!r} matches the condition")
    if len(keys) > batch.limits.max_rows_per_edit:
        raise ProtocolError(
            "too_many_rows",
            f"the condition matches more than {batch.limits.max_rows_per_edit} rows of "
            f"{table.name!r}; narrow it",
        )
    column = table.columns[edit.column]
    if edit.expect is not None:
        _check_base_expect(con, table, edit, key, keys)
    _check_reference(con, edit)
    if table.name == "sales":
        capture_before(con, "s.sale_id IN (SELECT unnest(?::BIGINT[]))", [keys])
    elif edit.column in SUMMARY_INPUTS.get(table.name, ()):
        capture_before(con, "s.product_id IN (SELECT unnest(?::INTEGER[]))", [keys])
    if table.name != "sales":
        batch.base_keys.setdefault(table.name, set()).update(keys)
    set_values(con, table, column.name, keys, [edit.value] * len(keys))


def _check_base_expect(con: Conn, table: Table, edit: Edit, key: str, keys: list[Any]) -> None:
    if len(keys) != 1:
        raise ProtocolError(
            "invalid_condition", "'expect' needs a condition that matches exactly one row"
        )
    current = con.execute(
        f"SELECT {ident(edit.column)} FROM {ident(table.name)} WHERE {ident(key)} = ?", [keys[0]]
    ).fetchone()[0]  # type: ignore[index]
    if _normalize(current) != _normalize(edit.expect):
        raise ProtocolError(
            "conflict",
            f"{edit.column} is {_normalize(current)}, not the expected {edit.expect}",
            current=_normalize(current),
        )


def _normalize(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _check_reference(con: Conn, edit: Edit) -> None:
    if edit.table != "sales" or edit.column not in ("product_id", "customer_id"):
        return
    target = "product" if edit.column == "product_id" else "customer"
    found = con.execute(
        f"SELECT count(*) FROM {target} WHERE {ident(edit.column)} = ?", [edit.value]
    ).fetchone()[0]  # type: ignore[index]
    if not found:
        raise ProtocolError(
            "unknown_reference", f"there is no {target} with {edit.column} {edit.value}"
        )


def capture_before(con: Conn, predicate: str, params: list[Any]) -> None:
    """Remember the old node and measures of sales rows about to change (first time only)."""
    con.execute(
        f"""
        INSERT INTO _before
        SELECT s.sale_id, {SALES_NODE}
        FROM sales s JOIN product p USING (product_id)
        WHERE ({predicate}) AND s.sale_id NOT IN (SELECT sale_id FROM _before)
        """,
        params,
    )


def apply_summary_edit(con: Conn, edit: Edit) -> None:
    cell = edit.condition
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
    leaves = _leaves(con, cell, edit.column, with_paths=edit.spread == "equal")
    target = _units(edit.value, scale)
    if edit.expect is not None:
        current = sum(leaf.value for leaf in leaves)
        if current != _units(edit.expect, scale):
            shown = _shown(current, scale)
            raise ProtocolError(
                "conflict", f"the cell is {shown}, not the expected {edit.expect}", current=shown
            )
    if leaves and edit.spread == "proportional" and not any(leaf.value for leaf in leaves):
        leaves = _leaves(con, cell, edit.column, with_paths=True)  # all zero: equal it is
    new_values = spreading.spread(leaves, target, edit.spread)
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


def _leaves(con: Conn, cell: dict[str, Any], column: str, with_paths: bool) -> list[spreading.Leaf]:
    """The rows of `_cell` as spread leaves in integer units, ordered by (path, sale_id).
    Paths (the child node at each level below the cell) are read only for equal spreads."""
    units = "CAST(net_price * 100 AS BIGINT)" if column == "net_amount" else "quantity"
    path = [c for c in HIERARCHY if cell[c] is None]
    if cell["month"] is None:
        path.append("month")
    if not with_paths or not path:
        rows = con.execute(f"SELECT sale_id, {units} FROM _cell ORDER BY sale_id").fetchall()
        return [spreading.Leaf(key, (), value) for key, value in rows]
    columns = ", ".join(path)
    rows = con.execute(
        f"SELECT sale_id, {units}, [{columns}] FROM _cell ORDER BY {columns}, sale_id"
    ).fetchall()
    return [spreading.Leaf(key, tuple(p), value) for key, value, p in rows]


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


# -- summary upkeep ------------------------------------------------------------------


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


def changed_base_rows(con: Conn, batch: _Batch) -> tuple[list[dict[str, Any]], bool]:
    cap = batch.limits.base_rows_broadcast
    rows: list[dict[str, Any]] = []
    truncated = False
    sources = [("sales", "sale_id", "SELECT DISTINCT sale_id FROM _before", [])]
    for name, keys in sorted(batch.base_keys.items()):
        key = TABLES[name].key[0]
        sources.append((name, key, "SELECT unnest(?)", [sorted(keys)]))
    for name, key, keys_sql, params in sources:
        if len(rows) >= cap:
            truncated = True
            break
        cursor = con.execute(
            f"SELECT * FROM {ident(name)} WHERE {ident(key)} IN ({keys_sql}) "
            f"ORDER BY {ident(key)} LIMIT ?",
            [*params, cap - len(rows) + 1],
        )
        names = [d[0] for d in cursor.description]
        found = cursor.fetchall()
        if len(rows) + len(found) > cap:
            truncated = True
            found = found[: cap - len(rows)]
        rows.extend({"table": name, **dict(zip(names, values, strict=True))} for values in found)
    return rows, truncated
