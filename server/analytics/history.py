"""`GET /history` on DuckDB: the events the writer's persister recorded (see
server/writer/history.py), newest first."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import duckdb

from protocol.catalog import CELL_COORDINATES, SUMMARY
from protocol.history import HistoryQuery
from server.writer.history import order_key

Conn = duckdb.DuckDBPyConnection
EVENT = "h.seq, h.request, h.changed_at, h.user_name, h.action, h.rows, h.cells, h.undoes, h.held"
EPOCH = dt.date(1970, 1, 1)


def history(cur: Conn, query: HistoryQuery) -> dict[str, Any]:
    if query.table == SUMMARY:
        return {"events": _cell_events(cur, query)}
    if query.table == "sales":
        return {"events": _row_events(cur, query)}
    return {"events": _user_events(cur, query)}


def _filters(query: HistoryQuery, alias: str) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if query.user is not None:
        clauses.append("h.user_name = ?")
        params.append(query.user)
    if query.before is not None:
        clauses.append(f"{alias}.ord < ?")
        params.append(order_key(query.before))
    return "".join(f" AND {c}" for c in clauses), params


def _cell_events(cur: Conn, query: HistoryQuery) -> list[dict[str, Any]]:
    cell = query.condition
    same = " AND ".join(f"c.{c} IS NOT DISTINCT FROM ?" for c in CELL_COORDINATES)
    extra, params = _filters(query, "c")
    rows = cur.execute(
        f"SELECT {EVENT}, c.old_quantity, c.old_net_amount, c.new_quantity, c.new_net_amount "
        f"FROM history_cells c JOIN history h ON h.request = c.request "
        f"WHERE {same} AND c.level = ?{extra} ORDER BY c.ord DESC LIMIT ?",
        [*(cell[c] for c in CELL_COORDINATES), cell["level"], *params, query.limit],
    ).fetchall()
    return [
        _event(row[:9], old=_measures(row[9], row[10]), new=_measures(row[11], row[12]))
        for row in rows
    ]


def _row_events(cur: Conn, query: HistoryQuery) -> list[dict[str, Any]]:
    extra, params = _filters(query, "r")
    rows = cur.execute(
        f"SELECT {EVENT}, list(r.column_name ORDER BY r.column_name), "
        "list(r.old ORDER BY r.column_name), list(r.new ORDER BY r.column_name) "
        "FROM history_rows r JOIN history h ON h.request = r.request "
        f"WHERE r.sale_id = ?{extra} GROUP BY ALL ORDER BY any_value(r.ord) DESC LIMIT ?",
        [query.condition["sale_id"], *params, query.limit],
    ).fetchall()
    return [
        _event(
            row[:9],
            old={c: _shown(c, v) for c, v in zip(row[9], row[10], strict=True)},
            new={c: _shown(c, v) for c, v in zip(row[9], row[11], strict=True)},
        )
        for row in rows
    ]


def _user_events(cur: Conn, query: HistoryQuery) -> list[dict[str, Any]]:
    extra, params = _filters(query, "h")
    rows = cur.execute(
        f"SELECT {EVENT} FROM history h WHERE TRUE{extra} ORDER BY h.ord DESC LIMIT ?",
        [*params, query.limit],
    ).fetchall()
    return [_event(row, old=None, new=None) for row in rows]


def _event(row: tuple[Any, ...], old: Any, new: Any) -> dict[str, Any]:
    seq, request, at, user, action, rows, cells, undoes, held = row
    event = {
        "seq": seq,
        "request": request,
        "time": at.isoformat(timespec="milliseconds") + "Z",
        "user": user,
        "action": action,
        "old": old,
        "new": new,
        "rows": rows,
        "cells": cells,
    }
    if undoes is not None:
        event["undoes"] = undoes
    if held is not None:
        event["held"] = held
    return event


def _measures(quantity: int | None, net_amount: Decimal | None) -> dict[str, Any] | None:
    if quantity is None:
        return None
    return {"quantity": quantity, "net_amount": net_amount}


def _shown(column: str, units: int) -> Any:
    if column == "net_price":
        return Decimal(units).scaleb(-2)
    if column == "invoice_date":
        return (EPOCH + dt.timedelta(days=units)).isoformat()
    return units
