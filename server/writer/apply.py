"""Apply a batch of requests to DuckDB in one transaction.

Every request reads what it needs and checks it before it changes anything, so a
rejected request leaves no trace. Runs of point edits (one sales row by key) settle
their summary change at once, computed in Python (server.writer.point_edits). Before a
sales row first changes any other way, its old node and measures go to `_before`; at
the end the summary is moved by (after - before) over the same grouping sets, touching
only the changed nodes. The transaction also records each request's outcome, the last
applied request id and the outgoing payload (the outbox), so a crash can never apply a
request twice or lose its announcement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol.actions import Action, ImportSpec
from protocol.catalog import TABLES
from protocol.codec import NO_SEQ, dumps_text
from protocol.edits import Edit, Hold
from protocol.errors import ProtocolError
from server.analytics.csv_import import apply_import
from server.store.sql import ident
from server.writer.base_edits import apply_base_edit, apply_point_edits, is_point_edit
from server.writer.batch import Batch, Conn, Limits
from server.writer.decide import Request
from server.writer.holds import apply_hold, has_holds
from server.writer.known import Known
from server.writer.spread_cell import apply_summary_edit
from server.writer.upkeep import update_summary


def last_applied(con: Conn) -> str | None:
    row = con.execute("SELECT last_id FROM _applied").fetchone()
    return row[0] if row else None


def apply_and_encode(
    con: Conn,
    requests: list[Request],
    limits: Limits,
    failed: dict[str, ProtocolError] | None = None,
    published: list[str] | None = None,
    known: Known | None = None,
) -> tuple[dict[str, Any], str]:
    """Apply `requests` in order in one transaction: the response payload and its JSON
    as stored in the outbox (to publish as is).

    Requests named in `failed` are recorded as rejected without being applied.
    `published` are outbox seqs confirmed in response_duck, deleted in this transaction.
    `known` is what the caller knows of the database (the seq published last)."""
    failed = failed or {}
    known = known if known is not None else Known()
    seq = requests[-1].id
    results: list[dict[str, Any]] = []
    con.execute("BEGIN TRANSACTION")
    try:
        batch = Batch(limits, known, has_holds=known.holds_exist(con))
        for run in _runs(requests, failed):
            for request, error in zip(run, _apply_run(con, run, batch, failed), strict=True):
                results.append(_result(request, seq, error, batch))
        base, truncated = changed_base_rows(con, batch)
        rows = update_summary(con, batch)
        prev = known.last_applied or last_applied(con) or NO_SEQ
        payload = {
            "seq": seq,
            "prev": prev,  # the chain lets readers detect trimmed gaps
            "rows": rows,
            "base": base,
            "base_truncated": truncated,
            "holds": batch.holds,
            "by": sorted({r["user"] for r in results if r["status"] == "applied"}),
            "results": results,
        }
        if batch.reload:
            payload["reload"] = True
        encoded = dumps_text(payload)
        _record(con, requests, results, seq, prev == NO_SEQ, encoded, published or [])
        any_holds = has_holds(con) if batch.holds else batch.has_holds
        con.execute("COMMIT")
    except BaseException:
        known.forget()  # the transaction may have changed what it knew
        con.execute("ROLLBACK")
        raise
    known.committed(seq, any_holds)
    _forget_uploads(requests)
    return payload, encoded


def _runs(requests: list[Request], failed: dict[str, ProtocolError]) -> list[list[Request]]:
    """Consecutive point edits form one run; every other request is a run of its own."""
    runs: list[list[Request]] = []
    in_point_run = False
    for request in requests:
        point = request.id not in failed and is_point_edit(request.action)
        if point and in_point_run:
            runs[-1].append(request)
        else:
            runs.append([request])
        in_point_run = point
    return runs


def _apply_run(
    con: Conn, run: list[Request], batch: Batch, failed: dict[str, ProtocolError]
) -> list[ProtocolError | None]:
    first = run[0]
    if first.id in failed:
        return [failed[first.id]]
    if is_point_edit(first.action):
        return apply_point_edits(con, [r.action for r in run], batch)  # type: ignore[misc]
    try:
        _apply_one(con, first, batch)
    except ProtocolError as exc:
        return [exc]
    return [None]


def _apply_one(con: Conn, request: Request, batch: Batch) -> None:
    action = request.action
    if _may_change_products(action):
        batch.known.forget_products()
    if isinstance(action, Hold):
        apply_hold(con, action, request.user, batch)
    elif isinstance(action, Edit):
        table = TABLES[action.table]
        if table.summary:
            apply_summary_edit(con, action, batch)
        else:
            apply_base_edit(con, table, action, batch)
    elif isinstance(action, ImportSpec):
        batch.known.forget_summary()  # an import may rebuild the summary
        stats = apply_import(con, action.as_dict())
        batch.stats[request.id] = stats
        if stats["inserted"] or stats["updated"]:
            batch.reload = True  # a bulk change: clients take a fresh snapshot
    else:
        raise ProtocolError("bad_message", "malformed request")


def _may_change_products(action: Action | None) -> bool:
    if isinstance(action, Hold):
        return False
    return not isinstance(action, Edit) or action.table == "product"


def _result(
    request: Request, seq: str, error: ProtocolError | None, batch: Batch
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "request": request.id,
        "ref": request.ref,
        "user": request.user,
        "status": "applied" if error is None else "rejected",
    }
    if error is None:
        result["seq"] = seq
        if request.id in batch.stats:
            result["stats"] = batch.stats[request.id]
    else:
        result["error"] = error.as_dict()
    return result


def _forget_uploads(requests: list[Request]) -> None:
    """An import's uploaded file, once its request is decided and committed."""
    for request in requests:
        if isinstance(request.action, ImportSpec):
            Path(request.action.path).unlink(missing_ok=True)


def _record(
    con: Conn,
    requests: list[Request],
    results: list[dict[str, Any]],
    seq: str,
    first: bool,
    payload: str,
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
    if first:
        con.execute("INSERT OR REPLACE INTO _applied VALUES (TRUE, ?)", [seq])
    else:  # an UPDATE costs a fraction of INSERT OR REPLACE on a keyed table
        con.execute("UPDATE _applied SET last_id = ?", [seq])
    if published:
        con.execute("DELETE FROM _outbox WHERE list_contains(?, seq)", [published])
    # seq is the id of the batch's last request, which no committed batch used before
    con.execute("INSERT INTO _outbox VALUES (?, ?, ?)", [seq, [r.id for r in requests], payload])


def changed_base_rows(con: Conn, batch: Batch) -> tuple[list[dict[str, Any]], bool]:
    """The changed base rows to show clients, at most `base_rows_broadcast` of them."""
    cap = batch.limits.base_rows_broadcast
    rows, truncated = _changed_sales(con, batch, cap)
    for name, keys in sorted(batch.base_keys.items()):
        if len(rows) >= cap:
            return rows, True
        key = TABLES[name].key[0]
        found = _rows_by_key(con, name, key, "SELECT unnest(?)", [sorted(keys)], cap - len(rows))
        truncated = len(found) > cap - len(rows)
        rows.extend(found[: cap - len(rows)])
    return rows, truncated


def _changed_sales(con: Conn, batch: Batch, cap: int) -> tuple[list[dict[str, Any]], bool]:
    """The first `cap` changed sales rows by sale_id, and whether there are more. Rows
    settled at once are known (each spread kept its first cap + 1: enough for the
    first cap of all); rows in `_before`, or after an import, are read back."""
    known = batch.sales_rows
    if batch.before_pending or batch.reload:
        keys_sql = "SELECT sale_id FROM _before UNION ALL SELECT unnest(?::BIGINT[])"
        found = _rows_by_key(con, "sales", "sale_id", keys_sql, [sorted(known)], cap)
    else:
        found = [{"table": "sales", **known[k]} for k in sorted(known)[: cap + 1]]
    return found[:cap], len(found) > cap


def _rows_by_key(
    con: Conn, table: str, key: str, keys_sql: str, params: list[Any], cap: int
) -> list[dict[str, Any]]:
    """Up to cap + 1 rows of `table` whose key is among `keys_sql`, by key."""
    cursor = con.execute(
        f"SELECT * FROM {ident(table)} WHERE {ident(key)} IN ({keys_sql}) "
        f"ORDER BY {ident(key)} LIMIT ?",
        [*params, cap + 1],
    )
    names = [d[0] for d in cursor.description]
    return [{"table": table, **dict(zip(names, row, strict=True))} for row in cursor.fetchall()]
