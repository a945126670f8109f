"""Barrier requests applied in DuckDB, one transaction each: edits of rows matched by a
condition, product and customer edits, imports (DESIGN §1). Everything interactive is
decided in memory (server.writer.decide).

The request reads what it needs and checks it before it changes anything, so a
rejected one leaves no trace. Before a sales row first changes, its old node and
measures go to `_before`; at the end the summary is moved by (after - before) over the
same grouping sets, touching only the changed nodes. The transaction also records the
outcome, `_applied` and the outgoing payload (the outbox), so a crash can never apply
the request twice or lose its announcement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol.actions import ImportSpec
from protocol.catalog import CELL_KEY, SUMMARY, TABLES
from protocol.codec import NO_SEQ, dumps_text
from protocol.edits import Edit
from protocol.errors import ProtocolError
from protocol.rollup import Cell
from protocol.versions import CreateVersion, LockVersion
from server.analytics.csv_import import apply_import
from server.store.sql import ident
from server.store.versions import apply_version_request, read_versions, resettle_versions
from server.writer.base_edits import apply_base_edit
from server.writer.batch import Batch, Conn, Limits
from server.writer.changes import CellValue, Step
from server.writer.decide import Request, outcome, request_time
from server.writer.history import write_history
from server.writer.holds import has_holds
from server.writer.upkeep import SAME_CELL, update_summary


def last_applied(con: Conn) -> str | None:
    row = con.execute("SELECT last_id FROM _applied").fetchone()
    return row[0] if row else None


def apply_requests(
    con: Conn,
    requests: list[Request],
    limits: Limits,
    failed: dict[str, ProtocolError] | None = None,
    prev: str | None = None,
) -> dict[str, Any]:
    """Apply `requests` in order in one transaction: the response payload (its JSON
    kept in the outbox in the same transaction, to publish after a crash).

    Requests named in `failed` are recorded as rejected without being applied. `prev`
    is the seq published last (the payload's `prev`)."""
    failed = failed or {}
    seq = requests[-1].id
    results: list[dict[str, Any]] = []
    con.execute("BEGIN TRANSACTION")
    try:
        batch = Batch(limits, has_holds=has_holds(con))
        for request in requests:
            error = _apply_request(con, request, batch, failed)
            results.append(outcome(request, seq, error, batch.stats.get(request.id)))
        base, truncated = changed_base_rows(con, batch)
        moved = con.execute("SELECT count(*) FROM _before").fetchone()[0]  # type: ignore[index]
        rows = update_summary(con, batch)
        _remember(con, requests, results, rows, seq, batch, moved)
        prev = prev or last_applied(con) or NO_SEQ
        payload = {
            "seq": seq,
            "prev": prev,  # the chain lets readers detect trimmed gaps
            "rows": rows,
            "base": base,
            "base_truncated": truncated,
            "holds": [],  # holds are interactive: decided in memory
            "by": sorted({r["user"] for r in results if r["status"] == "applied"}),
            "results": results,
        }
        if batch.reload:
            payload["reload"] = True
        if batch.versions:
            payload["versions"] = [v.as_dict() for v in read_versions(con).values()]
        if _hierarchy_moved(requests, batch) and len(read_versions(con)) > 1:
            resettle_versions(con)  # the hierarchy moved under every version's facts
            payload["reload"] = True
        _record(con, requests, results, seq, prev == NO_SEQ, dumps_text(payload))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _forget_uploads(requests)
    return payload


def _apply_request(
    con: Conn, request: Request, batch: Batch, failed: dict[str, ProtocolError]
) -> ProtocolError | None:
    if request.id in failed:
        return failed[request.id]
    action = request.action
    try:
        if isinstance(action, Edit) and not TABLES[action.table].summary:
            apply_base_edit(con, TABLES[action.table], action, batch)
        elif isinstance(action, ImportSpec):
            stats = apply_import(con, action.as_dict())
            batch.stats[request.id] = stats
            if stats["inserted"] or stats["updated"]:
                batch.reload = True  # a bulk change: clients take a fresh snapshot
        elif isinstance(action, CreateVersion | LockVersion):
            apply_version_request(con, action, request.user, request_time(request.id))
            batch.versions = True
        else:
            raise ProtocolError("bad_message", "not a request DuckDB applies")
    except ProtocolError as exc:
        return exc
    return None


def _remember(
    con: Conn,
    requests: list[Request],
    results: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    seq: str,
    batch: Batch,
    moved: int,
) -> None:
    """History events of the applied requests (the cells as they are now; their values
    before are not kept for barrier requests), and who changed the cells when."""
    applied = [r for r, res in zip(requests, results, strict=True) if res["status"] == "applied"]
    if not applied:
        return
    cells: dict[Cell, tuple[None, CellValue]] = {
        tuple(row[c] for c in CELL_KEY): (  # type: ignore[misc]
            None,
            None if row.get("deleted") else (row["quantity"], int(row["net_amount"] * 100), 0),
        )
        for row in rows
    }
    steps = []
    for request in applied:
        stats = batch.stats.get(request.id)
        count = stats["inserted"] + stats["updated"] if stats else moved
        action = "import" if isinstance(request.action, ImportSpec) else "edit"
        at = request_time(request.id)
        steps.append(Step(request.id, seq, request.user, action, at, {}, cells, count=count))
    write_history(con, steps)
    last = steps[-1]
    kept = [cell for cell, (_, new) in cells.items() if new is not None]
    if kept:
        columns = [list(c) for c in zip(*kept, strict=True)]
        con.execute(
            f"UPDATE {SUMMARY} t SET changed_by = $by, changed_at = $at FROM (SELECT "
            "unnest($supplier::VARCHAR[]) AS supplier, unnest($brand::VARCHAR[]) AS brand, "
            "unnest($family::VARCHAR[]) AS family, unnest($month::VARCHAR[]) AS month, "
            f"unnest($level::INTEGER[]) AS level) d WHERE {SAME_CELL}",
            {**dict(zip(CELL_KEY, columns, strict=True)), "by": last.user, "at": last.time},
        )
    shown = (last.user, last.time.isoformat(timespec="milliseconds") + "Z")
    for row in rows:
        if not row.get("deleted"):
            row["changed_by"], row["changed_at"] = shown


def _hierarchy_moved(requests: list[Request], batch: Batch) -> bool:
    """Did products change (an edit or an import), which moves facts of every version?"""
    imported = any(
        isinstance(r.action, ImportSpec) and r.action.table == "product" for r in requests
    )
    return imported or bool(batch.base_keys.get("product"))


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
    """The first `cap` changed sales rows by sale_id (read back from `_before`), and
    whether there are more."""
    if not batch.before_pending and not batch.reload:
        return [], False
    keys_sql = "SELECT sale_id FROM _before"
    found = _rows_by_key(con, "sales", "sale_id", keys_sql, [], cap)
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
