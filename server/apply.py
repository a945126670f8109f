"""Apply a batch of requests to DuckDB in one transaction.

Every request reads what it needs and checks it before it changes anything, so a
rejected request leaves no trace. Before a sales row first changes in a batch its old
node and measures go to `_before`; at the end the summary is moved by (after - before)
over the same grouping sets, touching only the changed nodes. The transaction also
records each request's outcome, the last applied request id and the outgoing payload
(the outbox), so a crash can never apply a request twice or lose its announcement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.catalog import TABLES
from protocol.codec import dumps_text
from protocol.edits import Edit, Hold
from protocol.errors import ProtocolError
from server.base_edits import apply_base_edit, apply_point_edits, is_point_edit
from server.batch import Batch, Conn, Limits, prepare
from server.holds import apply_hold, has_holds
from server.sql import ident
from server.summary import apply_summary_edit, update_summary

NO_SEQ = "0-0"  # the seq of a database no request has changed yet
Action = Edit | Hold

__all__ = ["NO_SEQ", "Limits", "Request", "apply_batch", "last_applied", "prepare"]


@dataclass(frozen=True)
class Request:
    id: str  # request_duck stream id
    action: Action | None  # None only for a body that no longer parses (then in `failed`)
    user: str
    ref: str | None = None  # the edge's correlation id, echoed in the outcome


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
    failed = failed or {}
    seq = requests[-1].id
    results: list[dict[str, Any]] = []
    con.execute("BEGIN TRANSACTION")
    try:
        batch = Batch(limits, has_holds=has_holds(con))
        con.execute("DELETE FROM _before")
        for run in _runs(requests, failed):
            for request, error in zip(run, _apply_run(con, run, batch, failed), strict=True):
                results.append(_result(request, seq, error))
        rows = update_summary(con)
        base, truncated = changed_base_rows(con, batch)
        payload = {
            "seq": seq,
            "prev": last_applied(con) or NO_SEQ,  # the chain lets readers detect trimmed gaps
            "rows": rows,
            "base": base,
            "base_truncated": truncated,
            "holds": batch.holds,
            "by": sorted({r["user"] for r in results if r["status"] == "applied"}),
            "results": results,
        }
        _record(con, requests, results, seq, payload, published or [])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return payload


def _runs(requests: list[Request], failed: dict[str, ProtocolError]) -> list[list[Request]]:
    """Consecutive point edits form one run; every other request is a run of its own."""
    runs: list[list[Request]] = []

    def batched(request: Request) -> bool:
        return request.id not in failed and is_point_edit(request.action)

    for request in requests:
        if batched(request) and runs and batched(runs[-1][0]):
            runs[-1].append(request)
        else:
            runs.append([request])
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
    if isinstance(action, Hold):
        apply_hold(con, action, request.user, batch)
    elif isinstance(action, Edit):
        table = TABLES[action.table]
        if table.summary:
            apply_summary_edit(con, action, batch)
        else:
            apply_base_edit(con, table, action, batch)
    else:
        raise ProtocolError("bad_message", "malformed request")


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


def changed_base_rows(con: Conn, batch: Batch) -> tuple[list[dict[str, Any]], bool]:
    """The changed base rows to show clients, at most `base_rows_broadcast` of them."""
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
