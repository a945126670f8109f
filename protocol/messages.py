"""Client -> server WebSocket messages (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.actions import Undo, versioned
from protocol.catalog import SUMMARY, TABLES
from protocol.codec import loads, parse_seq
from protocol.edits import (
    MAX_EDITS_PER_REQUEST,
    Edit,
    EditMany,
    Hold,
    parse_condition,
    parse_edit,
    parse_edit_many,
    parse_hold,
    summary_cell,
)
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL, version_name

MAX_NAME = 40
MAX_CLIENT_ID = 64


@dataclass(frozen=True)
class Hello:
    name: str
    token: str | None
    since: str | None
    version: str = ACTUAL  # the version whose snapshot the socket gets


@dataclass(frozen=True)
class EditMessage:
    id: str
    edit: Edit


@dataclass(frozen=True)
class EditManyMessage:
    id: str
    block: EditMany


@dataclass(frozen=True)
class UndoMessage:
    id: str
    undo: Undo


@dataclass(frozen=True)
class HoldMessage:
    id: str
    hold: Hold


@dataclass(frozen=True)
class Cursor:
    """Where the user is in the sheet (a summary cell, or None), for presence."""

    cell: dict[str, Any] | None


@dataclass(frozen=True)
class Ping:
    pass


Message = Hello | EditMessage | EditManyMessage | UndoMessage | HoldMessage | Cursor | Ping


def parse_message(data: str | bytes, max_edits: int = MAX_EDITS_PER_REQUEST) -> Message:
    raw = loads(data)
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object")
    kind = raw.get("type")
    if kind == "hello":
        return _hello(raw)
    if kind == "edit":
        return EditMessage(_client_id(raw), versioned(raw, parse_edit))
    if kind == "edit_many":
        block = versioned(raw, lambda m: parse_edit_many(m, max_edits))
        return EditManyMessage(_client_id(raw), block)
    if kind in ("undo", "redo"):
        undo = Undo(redo=kind == "redo", version=version_name(raw.get("version")))
        return UndoMessage(_client_id(raw), undo)
    if kind == "hold":
        return HoldMessage(_client_id(raw), versioned(raw, parse_hold))
    if kind == "cursor":
        return Cursor(_cursor_cell(raw.get("cell")))
    if kind == "ping":
        return Ping()
    raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:40]!r}")


def _client_id(raw: dict[str, Any]) -> str:
    value = raw.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID:
        raise ProtocolError(
            "bad_message", f"'id' must be a string of 1..{MAX_CLIENT_ID} characters"
        )
    return value


def _cursor_cell(cell: Any) -> dict[str, Any] | None:
    if cell is None:
        return None
    condition = parse_condition(TABLES[SUMMARY], cell)
    return {k: v for k, v in summary_cell(condition).items() if k != "level"}


def _hello(raw: dict[str, Any]) -> Hello:
    name = raw.get("name") or "anonymous"
    if not isinstance(name, str) or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ProtocolError("bad_message", f"'name' must be text of at most {MAX_NAME} characters")
    token = raw.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("bad_message", "'token' must be a string")
    since = raw.get("since")
    if since is not None:
        if not isinstance(since, str):
            raise ProtocolError("bad_message", "'since' must be a sequence string or null")
        parse_seq(since)
    version = version_name(raw.get("version"))
    return Hello(name.strip() or "anonymous", token, since, version)
