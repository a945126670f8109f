"""Response entries: what the writer publishes to response_duck for a decided batch,
and the `updates` frame sockets are sent for one or more of them.

An entry has two fields. `p` is the batch's payload without its changed rows (seq,
prev, results, by; reload and versions when they apply); `f`, present when the batch
changed anything, is the `updates` frame for it, encoded once by the writer. A hub that
is up to date, and a socket's replay, write that frame as it is, instead of parsing and
re-encoding a paste's megabyte of rows; REST polling, which wants the whole payload,
joins the two fields. An entry written before the split holds the whole payload in `p`,
and is read as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol.catalog import CELL_KEY, TABLES
from protocol.codec import dumps, loads

META = b"p"
FRAME = b"f"
IN_FRAME = ("rows", "base", "holds", "base_truncated")  # kept in the frame alone

Payload = dict[str, Any]


def entry_fields(payload: Payload) -> dict[bytes, bytes]:
    """The fields of the response entry for `payload`."""
    fields = {META: dumps({k: v for k, v in payload.items() if k not in IN_FRAME})}
    frame = updates_message([payload])
    if frame is not None:
        fields[FRAME] = dumps(frame)
    return fields


def joined(meta: Payload, frame: Payload | None) -> Payload:
    """The whole payload again from an entry's two fields, parsed (`frame` None: the
    entry had none, or holds the whole payload in `meta`)."""
    if "rows" in meta:  # written before the split
        return meta
    frame = frame or {}
    return {
        **meta,
        "rows": frame.get("rows", []),
        "base": frame.get("base", []),
        "holds": frame.get("holds", []),
        "base_truncated": bool(frame.get("base_truncated")),
    }


def entry_frame(fields: Mapping[bytes, bytes]) -> bytes | None:
    """The `updates` frame of one entry as sockets are sent it (None: it changed
    nothing): the writer's own; for an entry written before the split, one made from
    its payload, read exactly."""
    if FRAME in fields:
        return fields[FRAME]
    meta = loads(fields[META])
    message = updates_message([meta]) if "rows" in meta else None
    return None if message is None else dumps(message)


def updates_message(payloads: list[Payload]) -> Payload | None:
    """The `updates` message for consecutive payloads, or None when nothing changed.
    It carries the last payload's seq and every changed row as it is after the last
    one, so a client that fell behind catches up with one frame; and the list of
    versions when one of them changed it."""
    if len(payloads) == 1:
        payload = payloads[0]
        rows, base = payload["rows"], payload["base"]
        holds, by = payload.get("holds", []), payload.get("by", [])
        truncated = bool(payload.get("base_truncated"))
    else:
        rows, base, holds, by, truncated = merged_changes(payloads)
    versions = next((p["versions"] for p in reversed(payloads) if "versions" in p), None)
    if not (rows or base or holds or versions):
        return None
    message = {
        "type": "updates",
        "seq": payloads[-1]["seq"],
        "rows": rows,
        "base": base,
        "holds": holds,
        "by": by,
    }
    if truncated:
        message["base_truncated"] = True
    if versions:
        message["versions"] = versions  # a version was created, locked or unlocked
    return message


Rows = list[dict[str, Any]]


def merged_changes(payloads: list[Payload]) -> tuple[Rows, Rows, Rows, list[str], bool]:
    """The changes of consecutive payloads as one: each row as the last one left it,
    holds in order, the users who changed something; and whether a base was truncated."""
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    base: dict[tuple[Any, ...], dict[str, Any]] = {}
    holds: list[dict[str, Any]] = []
    by: set[str] = set()
    truncated = False
    for payload in payloads:
        for row in payload["rows"]:
            cells[(row.get("version"), *(row[column] for column in CELL_KEY))] = row
        for row in payload["base"]:
            base[row.get("version"), row["table"], row[TABLES[row["table"]].key[0]]] = row
        holds.extend(payload.get("holds", []))  # events, in order
        by.update(payload.get("by", []))
        truncated = truncated or bool(payload.get("base_truncated"))
    return list(cells.values()), list(base.values()), holds, sorted(by), truncated
