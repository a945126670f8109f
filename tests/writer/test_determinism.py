"""Deciding is deterministic (DESIGN §6): the same requests (edits, blocks, holds, undo
and redo by several users) give the same outcomes and the same DuckDB state however they
are batched, and re-deciding after a crash that
lost unpersisted batches reproduces exactly what was published before it."""

from __future__ import annotations

from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_collab_properties import collab_operation, requests_for

from protocol.catalog import SUMMARY
from server.writer.batch import Limits
from server.writer.cell_ids import CellIds
from server.writer.decide import Decider, Request, is_interactive
from server.writer.direct import DirectWriter
from server.writer.effects import Effects
from server.writer.persister import write_effects
from server.writer.state import load

Outcome = tuple[str, str | None]  # status, error code


def outcomes(payload: dict[str, Any]) -> dict[str, Outcome]:
    return {r["request"]: (r["status"], r.get("error", {}).get("code")) for r in payload["results"]}


def database(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Everything deciding writes, in a comparable form (batch seqs left out)."""
    return {
        "sales": con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall(),
        "product": con.execute("SELECT * FROM product ORDER BY product_id").fetchall(),
        "summary": con.execute(
            f"SELECT * EXCLUDE (cell_id) FROM {SUMMARY} ORDER BY ALL NULLS FIRST"
        ).fetchall(),
        "holds": con.execute("SELECT * FROM holds ORDER BY ALL NULLS FIRST").fetchall(),
        "history": con.execute("SELECT * EXCLUDE (seq) FROM history ORDER BY ALL").fetchall(),
        "history_cells": con.execute("SELECT * FROM history_cells ORDER BY ALL").fetchall(),
        "history_rows": con.execute("SELECT * FROM history_rows ORDER BY ALL").fetchall(),
        "undo_stacks": con.execute("SELECT * FROM undo_stacks ORDER BY ALL").fetchall(),
        "log": con.execute(
            "SELECT request_id, status, code, message, user_name FROM request_log ORDER BY ALL"
        ).fetchall(),
    }


def split(items: list[Request], sizes: list[int]) -> list[list[Request]]:
    batches, start = [], 0
    for size in sizes:
        if start >= len(items):
            break
        batches.append(items[start : start + size])
        start += size
    if start < len(items):
        batches.append(items[start:])
    return batches


def one_by_one(con: duckdb.DuckDBPyConnection, requests: list[Request]) -> dict[str, Outcome]:
    writer = DirectWriter(con)
    seen: dict[str, Outcome] = {}
    for request in requests:
        seen |= outcomes(writer.apply([request]))
    return seen


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(collab_operation, min_size=1, max_size=14),
    st.lists(st.integers(1, 6), min_size=1, max_size=14),
)
def test_batching_does_not_change_outcomes_or_state(fresh, ops, sizes):
    source = fresh()
    requests = requests_for(source, ops)
    alone, batched = fresh(), fresh()
    expected = one_by_one(alone, requests)
    writer = DirectWriter(batched)
    seen: dict[str, Outcome] = {}
    for batch in split(requests, sizes):
        seen |= outcomes(writer.apply(batch))
    assert seen == expected
    assert database(batched) == database(alone)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(collab_operation, min_size=1, max_size=14),
    st.lists(st.integers(1, 5), min_size=1, max_size=14),
    st.lists(st.booleans(), min_size=1, max_size=14),
    st.integers(0, 14),
)
def test_re_deciding_after_a_crash_reproduces_what_was_published(
    fresh, ops, sizes, flush_after, crash_after
):
    source = fresh()
    requests = [r for r in requests_for(source, ops) if is_interactive(r.action)]
    if not requests:
        return
    alone, crashed = fresh(), fresh()
    expected = one_by_one(alone, requests)

    # Decide batches and publish them at once; the persister writes some groups behind.
    decider = Decider(load(crashed), Limits())
    cell_ids = CellIds.load(crashed)
    published: dict[str, Outcome] = {}
    pending: Effects | None = None
    batches = split(requests, sizes)
    first = True
    for index, batch in enumerate(batches[:crash_after]):
        payload, effects = decider.decide(batch)
        published |= outcomes(payload)
        if pending is None:
            pending = effects
        else:
            pending.merge(effects)
        if flush_after[index % len(flush_after)]:
            write_effects(crashed, pending, first, cell_ids)
            first, pending = False, None
    # The crash: what was decided but not persisted is lost, with the decider.
    restarted = DirectWriter(crashed)
    applied = restarted.decider.state.applied
    after = [r for r in requests if applied is None or _later(r.id, applied)]
    redecided: dict[str, Outcome] = {}
    for batch in split(after, sizes[::-1]):
        redecided |= outcomes(restarted.apply(batch))
    assert {k: v for k, v in redecided.items() if k in published} == {
        k: v for k, v in published.items() if k in redecided
    }
    assert published | redecided == expected
    assert database(crashed) == database(alone)


def _later(a: str, b: str) -> bool:
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))
