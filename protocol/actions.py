"""The requests the journal carries (edits, block edits, holds, undo/redo, imports) and
their stream body.

Pure: what the edge XADDs to request_duck and what the writer reads back are the same
validated objects, encoded and parsed here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import orjson

from protocol.codec import dumps, loads
from protocol.edits import (
    CellBlock,
    Edit,
    EditMany,
    Hold,
    block_columns,
    block_edits,
    parse_edit,
    parse_edit_many,
    parse_hold,
    plain_cell_edit,
)
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL, CreateVersion, LockVersion, take_version, version_name

IMPORT_TABLES = ("sales", "product", "customer")
MODES = ("fast", "validate")
IMPORT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ImportSpec:
    """What the edge (or the CLI) asks the writer to import."""

    table: str
    path: str  # the CSV file, saved by the edge under <data_dir>/imports/
    mode: str = "fast"
    file_name: str | None = None  # as the client named it, for validation_logs
    import_id: str = ""
    upsert: bool = False

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ImportSpec:
        table, mode = spec.get("table"), spec.get("mode", "fast")
        if table not in IMPORT_TABLES:
            raise ProtocolError(
                "invalid_value", f"imports go to {', '.join(IMPORT_TABLES)}, not {table!r}"
            )
        if mode not in MODES:
            raise ProtocolError("invalid_value", f"mode must be one of {', '.join(MODES)}")
        import_id = spec.get("import_id") or new_import_id()
        if not isinstance(import_id, str) or not IMPORT_ID.match(import_id):
            raise ProtocolError("invalid_value", "import_id must be 1-64 letters, digits, - or _")
        upsert = spec.get("upsert", False)
        if not isinstance(upsert, bool):
            raise ProtocolError("invalid_value", "upsert must be true or false")
        path, file_name = spec.get("path"), spec.get("file_name")
        if not isinstance(path, str) or not path:
            raise ProtocolError("invalid_value", "path must name the CSV file to import")
        if file_name is not None and not isinstance(file_name, str):
            raise ProtocolError("invalid_value", "file_name must be a string")
        return cls(table, path, mode, file_name, import_id, upsert)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_import_id() -> str:
    return f"imp-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Undo:
    """Undo (redo=False) the sender's last applied request, or redo their last undone."""

    redo: bool = False
    version: str = ACTUAL

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redo": self.redo}
        return out if self.version == ACTUAL else {**out, "version": self.version}


Action = Edit | EditMany | Hold | ImportSpec | Undo | CreateVersion | LockVersion
_KINDS: dict[type, str] = {
    Edit: "edit",
    EditMany: "edit_many",
    CellBlock: "edit_many",
    Hold: "hold",
    ImportSpec: "import",
    Undo: "undo",
    CreateVersion: "create_version",
    LockVersion: "lock_version",
}
Versioned = TypeVar("Versioned", Edit, EditMany, Hold)


def versioned(raw: Any, parse: Callable[[Any], Versioned]) -> Versioned:
    """Parse an edit, block edit or hold together with the version it names."""
    if not isinstance(raw, dict):
        return parse(raw)
    cleaned, version = take_version(raw)
    action = parse(cleaned)
    if version == ACTUAL:
        return action
    if isinstance(action, EditMany):  # (a CellBlock is actual's: its edits, elsewhere)
        return EditMany(action.edits, version)  # type: ignore[return-value]
    return replace(action, version=version)


def action_version(action: Action | None) -> str:
    """The version a request changes (imports and version requests: actual's place)."""
    return getattr(action, "version", ACTUAL) if action is not None else ACTUAL


@dataclass(frozen=True)
class Sender:
    """Who sent a request: their name, the edge's correlation ref, and whether they
    are an admin (who may release anyone's hold)."""

    user: str
    ref: str | None = None
    admin: bool = False


def request_body(action: Action, sender: Sender) -> bytes:
    """The journal entry of a request: its action and who sent it. A block of plain cell
    edits (a paste) goes as columns, `{"cells": {"column": [...], ...}}`."""
    cells = None
    if isinstance(action, CellBlock):
        cells = action.cells
    elif isinstance(action, EditMany) and action.version == ACTUAL:
        cells = block_columns(action.edits)
    body = {
        _KINDS[type(action)]: action.as_dict() if cells is None else {"cells": cells},
        "user": sender.user,
        "ref": sender.ref,
    }
    if sender.admin:
        body["admin"] = True
    return dumps(body)


def parse_request_body(raw: bytes) -> tuple[Action, Sender]:
    """The action and sender of a journal entry; ProtocolError if malformed."""
    block = _journal_block(raw)
    if block is not None:
        return block
    body = loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("user"), str):
        raise ProtocolError("bad_message", "malformed request entry")
    if "edit" in body:
        action: Action = versioned(body["edit"], parse_edit)
    elif "hold" in body:
        action = versioned(body["hold"], parse_hold)
    elif "edit_many" in body:
        action = versioned(body["edit_many"], _parse_block)
    elif "import" in body:
        action = ImportSpec.parse(body["import"])
    elif "undo" in body and isinstance(body["undo"], dict):
        undo = body["undo"]
        action = Undo(undo.get("redo") is True, version_name(undo.get("version")))
    elif "create_version" in body:
        action = CreateVersion.parse(body["create_version"])
    elif "lock_version" in body:
        action = LockVersion.parse(body["lock_version"])
    else:
        raise ProtocolError(
            "bad_message", "a request holds an edit, a block edit, a hold, an undo or an import"
        )
    ref = body.get("ref")
    sender = Sender(body["user"], ref if isinstance(ref, str) else None, body.get("admin") is True)
    return action, sender


_BLOCK_ENTRY = frozenset(("edit_many", "user", "ref"))


def _journal_block(raw: bytes) -> tuple[EditMany, Sender] | None:
    """A block of plain summary-cell edits as the edge writes it to the journal, read
    without the exact-number pass (its values are decimal text; a float, which orjson
    may have rounded, sends the entry the full way) and each edit by plain_cell_edit;
    None for anything else, which the full parse then takes."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or body.keys() - {"admin"} != _BLOCK_ENTRY:
        return None
    block, user, ref = body["edit_many"], body["user"], body["ref"]
    if type(user) is not str or not (ref is None or type(ref) is str):
        return None
    if body.get("admin", True) is not True or type(block) is not dict:
        return None
    if block.keys() == {"cells"}:
        edits = block_edits(block["cells"])
        return None if edits is None else (EditMany(edits), Sender(user, ref, "admin" in body))
    if block.keys() != {"edits"} or type(block["edits"]) is not list or not block["edits"]:
        return None
    parsed = []
    for each in block["edits"]:
        exact = type(each) is dict and type(each.get("value")) is not float
        edit = plain_cell_edit(each) if exact else None
        if edit is None:
            return None
        parsed.append(edit)
    return EditMany(tuple(parsed)), Sender(user, ref, "admin" in body)


def _parse_block(raw: Any) -> EditMany:
    if isinstance(raw, dict) and raw.keys() == {"cells"}:  # a paste's columns, read exactly
        edits = block_edits(raw["cells"])
        if edits is None:
            raise ProtocolError("bad_message", "malformed block of cell edits in the journal")
        return EditMany(edits)
    return parse_edit_many(raw, max_edits=None)  # the edge capped it
