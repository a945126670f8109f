"""Deciding and persisting on one DuckDB connection, without Redis: how tests and
tools apply requests to a database file the way the writer and persister would."""

from __future__ import annotations

from typing import Any

from protocol.errors import ProtocolError
from server.writer.apply import apply_and_encode
from server.writer.batch import Conn, Limits
from server.writer.before_image import prepare
from server.writer.cell_ids import CellIds
from server.writer.decide import Decider, Request, is_interactive
from server.writer.history import load_stacks
from server.writer.persister import write_effects
from server.writer.state import load


class DirectWriter:
    """The writer and persister on one connection: each `apply` decides a batch in
    memory (barriers in DuckDB) and persists it before returning."""

    def __init__(self, con: Conn, limits: Limits | None = None) -> None:
        self.con = con
        self.limits = limits or Limits()
        prepare(con)
        self.decider = Decider(load(con), self.limits, load_stacks(con, self.limits.undo_depth))
        self.cell_ids = CellIds.load(con)

    def apply(
        self, requests: list[Request], failed: dict[str, ProtocolError] | None = None
    ) -> dict[str, Any]:
        """Decide `requests` in order and persist them; one payload for them all."""
        failed = failed or {}
        payloads: list[dict[str, Any]] = []
        run: list[Request] = []
        for request in requests:
            if is_interactive(request.action) or request.id in failed:
                run.append(request)
                continue
            if run:
                payloads.append(self._decide(run, failed))
                run = []
            payloads.append(self._barrier(request, failed))
        if run:
            payloads.append(self._decide(run, failed))
        return merged(payloads)

    def _decide(self, run: list[Request], failed: dict[str, ProtocolError]) -> dict[str, Any]:
        first = self.decider.published is None and self.decider.state.applied is None
        payload, effects = self.decider.decide(run, failed)
        write_effects(self.con, effects, first, self.cell_ids)
        return payload

    def _barrier(self, request: Request, failed: dict[str, ProtocolError]) -> dict[str, Any]:
        prev = self.decider.published
        payload, _ = apply_and_encode(self.con, [request], self.limits, failed, prev)
        self.con.execute("DELETE FROM _outbox")
        self.decider.state = load(self.con)
        self.cell_ids = CellIds.load(self.con)
        self.decider.published = payload["seq"]
        return payload


def apply_batch(
    con: Conn,
    requests: list[Request],
    limits: Limits | None = None,
    failed: dict[str, ProtocolError] | None = None,
) -> dict[str, Any]:
    """Decide and persist one batch against the database as it is now."""
    return DirectWriter(con, limits).apply(requests, failed)


def merged(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Consecutive payloads as one: later rows win, results and holds in order."""
    if len(payloads) == 1:
        return payloads[0]
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    base: dict[tuple[Any, ...], dict[str, Any]] = {}
    for payload in payloads:
        for row in payload["rows"]:
            cells[tuple(row[c] for c in ("supplier", "brand", "family", "month", "level"))] = row
        for row in payload["base"]:
            base[(row["table"], next(iter(v for k, v in row.items() if k != "table")))] = row
    out = {
        "seq": payloads[-1]["seq"],
        "prev": payloads[0]["prev"],
        "rows": list(cells.values()),
        "base": list(base.values()),
        "base_truncated": any(p["base_truncated"] for p in payloads),
        "holds": [h for p in payloads for h in p["holds"]],
        "by": sorted({u for p in payloads for u in p["by"]}),
        "results": [r for p in payloads for r in p["results"]],
    }
    if any(p.get("reload") for p in payloads):
        out["reload"] = True
    return out
