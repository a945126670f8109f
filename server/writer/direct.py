"""Deciding and persisting on one DuckDB connection, without Redis: how tests and
tools apply requests to a database file the way the writer and persister would."""

from __future__ import annotations

from typing import Any

from protocol.actions import action_version
from protocol.entries import merged_changes
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL, CreateVersion, LockVersion
from server.writer.apply import apply_requests
from server.writer.batch import Conn, Limits
from server.writer.before_image import prepare
from server.writer.decide import Decider, Request, is_interactive
from server.writer.persister import write_groups
from server.writer.versions import (
    BARRIER_IN_VERSION,
    decide_in,
    decider_for,
    load_versions,
    refusal,
    runs_by_version,
    set_published,
)


class DirectWriter:
    """The writer and persister on one connection: each `apply` decides a batch in
    memory (barriers in DuckDB) and persists it before returning."""

    def __init__(self, con: Conn, limits: Limits | None = None, defer: bool = False) -> None:
        self.con = con
        self.limits = limits or Limits()
        self.defer = defer  # as the writer does: a block's rows spread after its payload
        prepare(con)
        self.versions = load_versions(con, self.limits)

    @property
    def decider(self) -> Decider:
        """Actual's decider."""
        return self.versions[ACTUAL].decider

    def version(self, name: str) -> Decider:
        return self.versions[name].decider

    def apply(
        self, requests: list[Request], failed: dict[str, ProtocolError] | None = None
    ) -> dict[str, Any]:
        """Decide `requests` in order and persist them; one payload for them all."""
        failed = failed or {}
        payloads: list[dict[str, Any]] = []
        run: list[Request] = []
        for request in requests:
            if not is_interactive(request.action) and action_version(request.action) != ACTUAL:
                failed[request.id] = ProtocolError("bad_message", BARRIER_IN_VERSION)
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
        payloads = []
        for version, requests in runs_by_version(run):
            refused = refusal(self.versions, version)
            if refused is not None:
                failed.update(dict.fromkeys((r.id for r in requests), refused))
            loaded = decider_for(self.versions, version)
            first = loaded.decider.published is None and loaded.decider.state.applied is None
            payload, effects = decide_in(loaded, requests, failed, self.defer)
            loaded.decider.finish()
            set_published(self.versions, payload["seq"])
            cell_ids = {each.version.schema: each.cell_ids for each in self.versions.values()}
            write_groups(self.con, {effects.schema: effects}, effects.last_id, first, cell_ids)
            payloads.append(payload)
        return merged(payloads)

    def _barrier(self, request: Request, failed: dict[str, ProtocolError]) -> dict[str, Any]:
        prev = self.decider.published
        payload = apply_requests(self.con, [request], self.limits, failed, prev)
        self.con.execute("DELETE FROM _outbox")
        reload = not isinstance(request.action, CreateVersion | LockVersion)
        self.versions = load_versions(self.con, self.limits, self.versions, reload)
        set_published(self.versions, payload["seq"])
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
    rows, base, holds, by, truncated = merged_changes(payloads)
    out = {
        "seq": payloads[-1]["seq"],
        "prev": payloads[0]["prev"],
        "rows": rows,
        "base": base,
        "base_truncated": truncated,
        "holds": holds,
        "by": by,
        "results": [r for p in payloads for r in p["results"]],
    }
    if any(p.get("reload") for p in payloads):
        out["reload"] = True
    for key in ("version", "versions"):
        named = [p[key] for p in payloads if key in p]
        if named:
            out[key] = named[-1]
    return out
