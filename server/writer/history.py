"""History and undo stacks in DuckDB: steps are written in the persister's group commit
(inside its transaction), and the undo stacks are loaded back at start."""

from __future__ import annotations

from itertools import chain
from typing import Any

import duckdb
import numpy as np

from protocol.catalog import CELL_KEY
from protocol.codec import parse_seq
from protocol.rollup import Cell
from server.writer.changes import RowChange, Step
from server.writer.undo import Snapshot, UndoStacks

Conn = duckdb.DuckDBPyConnection
MONEY = "({name}::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2)"
NO_VALUE = (0, 0, -1)  # a cell that did not (or no longer) exist: line count -1


def order_key(request_id: str) -> int:
    """A stream id as one BIGINT that sorts like it (ms * 10^6 + sequence)."""
    ms, n = parse_seq(request_id)
    return ms * 1_000_000 + min(n, 999_999)


def write_history(con: Conn, steps: list[Step]) -> None:
    """Inside the caller's transaction. Columns go to DuckDB as numpy arrays it scans
    (Python lists bound as parameters cost about 10 µs a value)."""
    if not steps:
        return
    requests = _strings([s.request for s in steps])
    ords = np.array([order_key(s.request) for s in steps], dtype=np.int64)
    events = {  # noqa: F841 (scanned by name below)
        "request": requests,
        "seq": _strings([s.seq for s in steps]),
        "ord": ords,
        "user_name": _strings([s.user for s in steps]),
        "action": _strings([s.action for s in steps]),
        "changed_at": np.array([s.time for s in steps], dtype="datetime64[us]"),
        "rows": np.array([s.row_count for s in steps], dtype=np.int64),
        "cells": np.array([len(s.cells) for s in steps], dtype=np.int64),
        "undoes": _strings([s.undoes for s in steps]),
        "held": _strings([None if s.held is None else str(s.held).lower() for s in steps]),
    }
    con.execute(
        "INSERT INTO history SELECT request, seq, ord, user_name, action, changed_at, rows, "
        "cells, undoes, held::BOOLEAN FROM events"
    )
    _write_cells(con, steps, requests, ords)
    _write_rows(con, steps, ords)


def _write_cells(con: Conn, steps: list[Step], requests: np.ndarray, ords: np.ndarray) -> None:
    # built by whole steps, at C speed where it can be (repeats, chains): a
    # group commit of point edits writes thousands of cells, eight an edit
    counts = [len(step.cells) for step in steps]
    cells: list[Cell] = list(chain.from_iterable(step.cells for step in steps))
    if not cells:
        return
    values = list(chain.from_iterable(step.cells.values() for step in steps))
    olds = np.array([before or NO_VALUE for before, _ in values], dtype=np.int64)
    news = np.array([after or NO_VALUE for _, after in values], dtype=np.int64)
    coordinates = list(zip(*cells, strict=True))
    v = {  # noqa: F841 (scanned by name below)
        "request": np.repeat(requests, counts),
        "ord": np.repeat(ords, counts),
        **{name: _strings(coordinates[i]) for i, name in enumerate(CELL_KEY[:4])},
        "level": np.array(coordinates[4], dtype=np.int32),
        "oq": olds[:, 0],
        "oc": olds[:, 1],
        "ol": olds[:, 2],
        "nq": news[:, 0],
        "nc": news[:, 1],
        "nl": news[:, 2],
    }
    con.execute(
        "INSERT INTO history_cells SELECT request, ord, supplier, brand, family, month, level, "
        "CASE WHEN ol >= 0 THEN oq END, CASE WHEN ol >= 0 THEN "
        f"{MONEY.format(name='oc')} END, CASE WHEN nl >= 0 THEN nq END, "
        f"CASE WHEN nl >= 0 THEN {MONEY.format(name='nc')} END FROM v"
    )


def _strings(values: Any) -> np.ndarray:
    return np.array(values, dtype=object)


def _write_rows(con: Conn, steps: list[Step], ords: np.ndarray) -> None:
    parts = [
        (step.request, key, column, change)
        for step, key in zip(steps, ords.tolist(), strict=True)
        for column, change in step.rows.items()
    ]
    if not parts:
        return
    sizes = [len(change.sale_ids) for *_, change in parts]
    # numbers only per row (strings per part): no million-object arrays under the GIL;
    # each as narrow as the steps keep it (DuckDB widens on insert): a group commit of
    # supplier spreads writes millions of rows, and these arrays set its peak memory
    rows = {  # noqa: F841 (scanned by name below)
        "part": np.repeat(np.arange(len(parts), dtype=np.int32), sizes),
        "sale_id": np.concatenate([c.sale_ids for *_, c in parts]),
        "old": np.concatenate([c.before for *_, c in parts]),
        "new": np.concatenate([c.after for *_, c in parts]),
    }
    by_part = {  # noqa: F841 (scanned by name below)
        "part": np.arange(len(parts), dtype=np.int32),
        "request": _strings([p[0] for p in parts]),
        "ord": np.array([p[1] for p in parts], dtype=np.int64),
        "column_name": _strings([p[2] for p in parts]),
    }
    con.execute(
        "INSERT INTO history_rows SELECT p.request, p.ord, r.sale_id, p.column_name, r.old, r.new "
        "FROM rows r JOIN by_part p USING (part)"
    )


def write_stacks(con: Conn, stacks: dict[str, Snapshot]) -> None:
    """Replace the stacks of the users named (done and undone steps, oldest first).
    Numpy columns scanned by name: ten editors' full stacks are a thousand entries a
    group commit, which as bound lists cost milliseconds."""
    if not stacks:
        return
    users = _strings(list(stacks))  # noqa: F841 (scanned by name below)
    con.execute("DELETE FROM undo_stacks WHERE user_name IN (SELECT * FROM users)")
    entries = [
        (user, undone, position, step.request)
        for user, snapshot in stacks.items()
        for undone, steps in enumerate(snapshot)
        for position, step in enumerate(steps)
    ]
    if not entries:
        return
    user_names, undone, positions, requests = zip(*entries, strict=True)
    s = {  # noqa: F841 (scanned by name below)
        "user_name": _strings(user_names),
        "undone": np.array(undone, dtype=bool),
        "position": np.array(positions, dtype=np.int32),
        "request": _strings(requests),
    }
    con.execute("INSERT INTO undo_stacks SELECT user_name, undone, position, request FROM s")


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
        rows.setdefault(request, {})[column] = RowChange.kept(
            np.array(sale_ids, dtype=np.int64),
            np.array(old, dtype=np.int64),
            np.array(new, dtype=np.int64),
        )
    for user, undone, request, seq, action, at in entries:
        step = Step(request, seq, user, action, at, rows.get(request, {}), {})
        stack = stacks.stack(user)
        (stack.undone if undone else stack.done).append(step)
    stacks.recount()
    return stacks
