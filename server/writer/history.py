"""History and undo stacks in DuckDB: steps are written in the persister's group commit
(inside its transaction), and the undo stacks are loaded back at start."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np

from protocol.catalog import CELL_KEY
from protocol.codec import parse_seq
from server.writer.changes import RowChange, Step
from server.writer.undo import UndoStacks

Conn = duckdb.DuckDBPyConnection
MONEY = "(unnest(${name}::BIGINT[])::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2)"


def order_key(request_id: str) -> int:
    """A stream id as one BIGINT that sorts like it (ms * 10^6 + sequence)."""
    ms, n = parse_seq(request_id)
    return ms * 1_000_000 + min(n, 999_999)


def write_history(con: Conn, steps: list[Step]) -> None:
    if not steps:
        return
    con.execute(
        "INSERT INTO history SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), "
        "unnest($3::BIGINT[]), unnest($4::VARCHAR[]), unnest($5::VARCHAR[]), "
        "unnest($6::TIMESTAMP[]), unnest($7::BIGINT[]), unnest($8::BIGINT[]), "
        "unnest($9::VARCHAR[]), unnest($10::BOOLEAN[])",
        [
            [s.request for s in steps],
            [s.seq for s in steps],
            [order_key(s.request) for s in steps],
            [s.user for s in steps],
            [s.action for s in steps],
            [s.time for s in steps],
            [s.row_count for s in steps],
            [len(s.cells) for s in steps],
            [s.undoes for s in steps],
            [s.held for s in steps],
        ],
    )
    _write_cells(con, steps)
    _write_rows(con, steps)


def _write_cells(con: Conn, steps: list[Step]) -> None:
    names = ("request", "ord", *CELL_KEY, "oq", "oc", "nq", "nc")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for step in steps:
        key = order_key(step.request)
        for cell, (old, new) in step.cells.items():
            columns["request"].append(step.request)
            columns["ord"].append(key)
            for name, value in zip(CELL_KEY, cell, strict=True):
                columns[name].append(value)
            columns["oq"].append(None if old is None else old[0])
            columns["oc"].append(None if old is None else old[1])
            columns["nq"].append(None if new is None else new[0])
            columns["nc"].append(None if new is None else new[1])
    if not columns["request"]:
        return
    con.execute(
        "INSERT INTO history_cells SELECT unnest($request::VARCHAR[]), unnest($ord::BIGINT[]), "
        "unnest($supplier::VARCHAR[]), unnest($brand::VARCHAR[]), unnest($family::VARCHAR[]), "
        "unnest($month::VARCHAR[]), unnest($level::INTEGER[]), unnest($oq::BIGINT[]), "
        f"{MONEY.format(name='oc')}, unnest($nq::BIGINT[]), {MONEY.format(name='nc')}",
        columns,
    )


def _write_rows(con: Conn, steps: list[Step]) -> None:
    parts = [
        (step.request, order_key(step.request), column, change)
        for step in steps
        for column, change in step.rows.items()
    ]
    if not parts:
        return
    sizes = [len(change.sale_ids) for *_, change in parts]
    # numbers only per row (strings per part): no million-object arrays under the GIL
    rows = {  # noqa: F841 (scanned by name below)
        "part": np.repeat(np.arange(len(parts), dtype=np.int64), sizes),
        "sale_id": np.concatenate([c.sale_ids for *_, c in parts]).astype(np.int64),
        "old": np.concatenate([c.before for *_, c in parts]).astype(np.int64),
        "new": np.concatenate([c.after for *_, c in parts]).astype(np.int64),
    }
    con.execute(
        "INSERT INTO history_rows SELECT p.request, p.ord, r.sale_id, p.column_name, r.old, r.new "
        "FROM rows r JOIN (SELECT unnest($1::VARCHAR[]) AS request, unnest($2::BIGINT[]) AS ord, "
        "unnest($3::VARCHAR[]) AS column_name, generate_subscripts($1::VARCHAR[], 1) - 1 AS part) "
        "p USING (part)",
        [[p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]],
    )


def write_stacks(con: Conn, stacks: dict[str, tuple[list[str], list[str]]]) -> None:
    """Replace the stacks of the users named (done and undone request ids, oldest first)."""
    if not stacks:
        return
    users = list(stacks)
    con.execute("DELETE FROM undo_stacks WHERE user_name IN (SELECT unnest(?::VARCHAR[]))", [users])
    entries = [
        (user, undone, position, request)
        for user, lists in stacks.items()
        for undone, requests in enumerate(lists)
        for position, request in enumerate(requests)
    ]
    if entries:
        columns = [list(c) for c in zip(*entries, strict=True)]
        columns[1] = [bool(u) for u in columns[1]]
        con.execute(
            "INSERT INTO undo_stacks SELECT unnest($1::VARCHAR[]), unnest($2::BOOLEAN[]), "
            "unnest($3::INTEGER[]), unnest($4::VARCHAR[])",
            columns,
        )


def load_stacks(con: Conn, depth: int) -> UndoStacks:
    """The undo stacks as DuckDB holds them, each step with the rows it changed."""
    stacks = UndoStacks(depth)
    entries = con.execute(
        "SELECT u.user_name, u.undone, u.request, h.seq, h.action, h.changed_at "
        "FROM undo_stacks u JOIN history h USING (request) "
        "ORDER BY u.user_name, u.undone, u.position"
    ).fetchall()
    if not entries:
        return stacks
    rows: dict[str, dict[str, RowChange]] = {}
    found = con.execute(
        "SELECT request, column_name, list(sale_id ORDER BY sale_id), "
        "list(old ORDER BY sale_id), list(new ORDER BY sale_id) FROM history_rows "
        "WHERE request IN (SELECT request FROM undo_stacks) GROUP BY request, column_name"
    ).fetchall()
    for request, column, sale_ids, old, new in found:
        rows.setdefault(request, {})[column] = RowChange(
            np.array(sale_ids, dtype=np.int64), np.array(old), np.array(new)
        )
    for user, undone, request, seq, action, at in entries:
        step = Step(request, seq, user, action, at, rows.get(request, {}), {})
        stack = stacks.stack(user)
        (stack.undone if undone else stack.done).append(step)
    stacks.recount()
    return stacks
