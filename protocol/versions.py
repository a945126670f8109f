"""Versions (DESIGN §13): `actual` and named plan versions, a coordinate of every cell
and fact row. Pure: names, the version a message names, and the requests that create
and lock versions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from protocol.catalog import Column
from protocol.errors import ProtocolError
from protocol.values import coerce_value

ACTUAL = "actual"
VERSION_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}", re.ASCII)
PERCENT = Column("percent", "decimal", scale=4, precision=9, max_abs=1000)
MIN_PERCENT = -100  # a copy at -100 % holds zeros


def version_name(value: Any, what: str = "version") -> str:
    if value is None:
        return ACTUAL
    if not isinstance(value, str) or not VERSION_NAME.fullmatch(value):
        raise ProtocolError(
            "bad_message",
            f"'{what}' is a version name: 1-40 lower-case letters, digits, '.', '-' or '_', "
            "starting with a letter or digit",
        )
    return value


def take_version(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The version a message names, and the message without it. It may be named at the
    top (`"version": "budget"`) or like a column in the condition, and in a block edit
    in the edits' conditions; every place that names one must name the same."""
    named: set[str] = set()
    out = dict(raw)
    if "version" in out:
        named.add(version_name(out.pop("version")))
    out["condition"] = _without_version(out.get("condition"), named)
    if "condition" not in raw:
        del out["condition"]
    if isinstance(out.get("edits"), list):
        out["edits"] = [_edit_without_version(edit, named) for edit in out["edits"]]
    if len(named) > 1:
        raise ProtocolError(
            "bad_message", f"a request edits one version, not {', '.join(sorted(named))}"
        )
    return out, named.pop() if named else ACTUAL


def _edit_without_version(edit: Any, named: set[str]) -> Any:
    """A block's edit without the version it names (copied only then: a paste has
    thousands)."""
    condition = edit.get("condition") if isinstance(edit, dict) else None
    if not isinstance(edit, dict) or not (
        "version" in edit or (isinstance(condition, dict) and "version" in condition)
    ):
        return edit
    edit = dict(edit)
    if "version" in edit:
        named.add(version_name(edit.pop("version")))
    if "condition" in edit:
        edit["condition"] = _without_version(edit["condition"], named)
    return edit


def _without_version(condition: Any, named: set[str]) -> Any:
    if not isinstance(condition, dict) or "version" not in condition:
        return condition
    rest = dict(condition)
    named.add(version_name(rest.pop("version")))
    return rest


@dataclass(frozen=True)
class CreateVersion:
    """Copy version `source` as `name`, net prices scaled by `percent` (None: as is)."""

    name: str
    source: str = ACTUAL
    percent: str | None = None  # exact decimal text

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.source, "percent": self.percent}

    @classmethod
    def parse(cls, data: Any) -> CreateVersion:
        if not isinstance(data, dict):
            raise ProtocolError("bad_message", "a version is an object: name, from, percent")
        extra = sorted(set(data) - {"name", "from", "percent"})
        if extra:
            raise ProtocolError("bad_message", f"a version has name, from and percent; not {extra}")
        name = data.get("name")
        if name == ACTUAL or name is None:
            raise ProtocolError("bad_message", "name the new version (not 'actual')")
        percent = data.get("percent")
        if percent is not None:
            percent = coerce_value(PERCENT, percent)
            if float(percent) < MIN_PERCENT:  # type: ignore[arg-type]
                raise ProtocolError(
                    "invalid_value", "percent is at least -100 (a copy of zeros)", column="percent"
                )
        return cls(version_name(name, "name"), version_name(data.get("from"), "from"), percent)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LockVersion:
    """Lock a version against edits (locked=False: unlock it); admins only."""

    name: str
    locked: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "locked": self.locked}

    @classmethod
    def parse(cls, data: Any) -> LockVersion:
        if not isinstance(data, dict) or not isinstance(data.get("locked"), bool):
            raise ProtocolError("bad_message", "a lock names the version and 'locked'")
        name = version_name(data.get("name"), "name")
        if name == ACTUAL:
            raise ProtocolError("bad_message", "'actual' cannot be locked")
        return cls(name, data["locked"])
