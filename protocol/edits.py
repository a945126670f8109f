"""Validation of the edit shape (DESIGN §4) before anything reaches the stream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, cached_property
from typing import Any

from protocol.catalog import (
    CELL_COORDINATES,
    CELL_KEY,
    HIERARCHY,
    LEVEL_BRAND,
    LEVEL_FAMILY,
    LEVEL_SUPPLIER,
    LEVEL_TOTAL,
    SUMMARY,
    TABLES,
    Column,
    Table,
)
from protocol.conditions import WHERE, equalities, parse_text_condition
from protocol.errors import ProtocolError
from protocol.values import MONTH_TEXT, Scalar, check_written, coerce_value, max_abs
from protocol.versions import ACTUAL, version_name

SPREAD_METHODS = ("proportional", "equal", "percent", "like")
# `percent`: the value is a change in percent of the cell's current value (5 = +5 %),
# with up to 4 decimal places; -100 empties the cell.
_PERIOD_TEXT = re.compile(r"[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?", re.ASCII)
PERCENT = Column("percent", "decimal", scale=4, max_abs=10_000, min_value=-100)
MAX_EDITS_PER_REQUEST = 10_000  # DUCKSHEET_MAX_EDITS_PER_REQUEST


@dataclass(frozen=True)
class Edit:
    """A validated edit. Values are normalized: integers as int, decimals as exact
    strings ("12.30"), dates as "YYYY-MM-DD", months as "YYYY-MM"."""

    table: str
    column: str
    value: Scalar
    condition: dict[str, Scalar]
    spread: str = "proportional"
    expect: Scalar = None
    like: str | None = None  # spread "like": the period whose mix to take
    version: str = ACTUAL
    like_version: str | None = None  # ... or the version whose mix to take

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "column": self.column,
            "value": self.value,
            "condition": self.condition,
        }
        if self.version != ACTUAL:
            out["version"] = self.version
        if TABLES[self.table].summary:
            out["spread"] = self.spread
        if self.expect is not None:
            out["expect"] = self.expect
        if self.like is not None:
            out["like"] = {"period": self.like}
        if self.like_version is not None:
            out["like"] = {"version": self.like_version}
        return out


@dataclass(frozen=True)
class Hold:
    """Hold (on=True) or release a summary cell: spreads leave the rows below it alone."""

    cell: dict[str, Scalar]
    on: bool = True
    version: str = ACTUAL

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"condition": self.cell, "on": self.on}
        return out if self.version == ACTUAL else {**out, "version": self.version}


@dataclass(frozen=True, eq=False)
class EditMany:
    """A block of edits (a paste, a fill) applied in order as one request, atomically."""

    edits: tuple[Edit, ...]
    version: str = ACTUAL

    def __eq__(self, other: object) -> bool:  # a CellBlock equals the EditMany of its edits
        if not isinstance(other, EditMany):
            return NotImplemented
        return (self.version, self.edits) == (other.version, other.edits)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edits": [edit.as_dict() for edit in self.edits]}
        return out if self.version == ACTUAL else {**out, "version": self.version}

    @property
    def size(self) -> int:
        return len(self.edits)


class CellBlock(EditMany):
    """A block of plain cell edits (of actual) held as the journal's columns
    (BLOCK_COLUMNS), as the edge reads a paste: its edits are built only when asked for,
    which the edge never does."""

    def __init__(self, cells: dict[str, list[Any]]) -> None:
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "version", ACTUAL)

    @cached_property
    def edits(self) -> tuple[Edit, ...]:  # type: ignore[override]
        edits = block_edits(self.cells)
        assert edits is not None, "plain_columns wrote columns block_edits reads"
        return edits

    @property
    def size(self) -> int:
        return len(self.cells["column"])


def parse_edit_many(message: Any, max_edits: int | None = MAX_EDITS_PER_REQUEST) -> EditMany:
    """A block edit: 1..max_edits edits, each a summary cell or a sales row by sale_id
    (what a grid paste produces). A bad edit is reported with its `index`."""
    edits = message.get("edits") if isinstance(message, dict) else None
    if not isinstance(edits, list) or not edits:
        raise ProtocolError("bad_message", "'edits' must be a non-empty list of edits")
    if max_edits is not None and len(edits) > max_edits:
        raise ProtocolError(
            "too_many_edits", f"a block edit holds at most {max_edits:,} edits, not {len(edits):,}"
        )
    cells = plain_columns(edits)  # a paste: checked into columns, no edit built
    if cells is not None:
        return CellBlock(cells)
    parsed = []
    for index, raw in enumerate(edits):
        edit = plain_cell_edit(raw)  # what a paste holds; every other edit the long way
        parsed.append(edit if edit is not None else _block_edit(raw, index))
    return EditMany(tuple(parsed))


_PLAIN_SPREADS = frozenset(("proportional", "equal"))


def plain_cell_edit(raw: Any) -> Edit | None:
    """A plain spread of a summary cell named by an object condition: the form a
    paste's edits take, from the grid and in the journal. Checked as parse_edit checks
    it, in about half the time; None for any other edit, which parse_edit takes. A
    property test holds the two equal wherever this one answers."""
    parts = _plain_parts(raw)
    if parts is None:
        return None
    name, spread, _, cell, value = parts
    return _plain_edit(name, value, dict(cell), spread)  # each edit its own cell


def plain_columns(raws: list[Any]) -> dict[str, list[Any]] | None:
    """The journal's columns (BLOCK_COLUMNS) of a block whose every edit plain_cell_edit
    takes and block_columns writes, each checked as plain_cell_edit checks it but no edit
    built (a paste's 5,000, at the edge); None when any is another kind of edit."""
    rows = []
    for raw in raws:
        parts = _plain_parts(raw)
        if parts is None or type(parts[4]) not in (str, int):  # what block_columns writes
            return None
        name, spread, path, _, value = parts
        rows.append((name, spread, *path, value))
    if not rows:
        return None
    return dict(zip(BLOCK_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))


PlainParts = tuple[str, str, tuple[Any, ...], dict[str, Scalar], Scalar]


def _plain_parts(raw: Any) -> PlainParts | None:
    """(column, spread, path, cell, value) of a plain cell edit, checked; None for any
    other edit. The cell is the shared one of its path: copy it before handing it out."""
    if type(raw) is not dict or raw.get("table") != SUMMARY or raw.get("expect") is not None:
        return None
    name, spread, condition = (
        raw.get("column"),
        raw.get("spread") or "proportional",
        raw.get("condition"),
    )
    column = _SUMMARY_COLUMNS.get(name) if type(name) is str else None
    if column is None or type(spread) is not str or spread not in _PLAIN_SPREADS:
        return None
    if type(condition) is not dict or not condition.keys() <= _CELL_NAMES:
        return None
    path = tuple(map(condition.get, CELL_COORDINATES))
    cell = _path_cell(path)
    given = condition.get("level")
    if cell is None or (given is not None and (type(given) is not int or given != cell["level"])):
        return None
    value = _plain_value(column, raw["value"]) if "value" in raw else None
    if value is None:
        return None
    return column.name, spread, path, cell, value


def _plain_edit(column: str, value: Scalar, cell: dict[str, Scalar], spread: str) -> Edit:
    """Edit(SUMMARY, column, value, cell, spread) at a third of the frozen __init__'s
    cost (it sets nine fields one by one), for the 5,000 edits of a paste."""
    edit = object.__new__(Edit)
    edit.__dict__.update(
        table=SUMMARY,
        column=column,
        value=value,
        condition=cell,
        spread=spread,
        expect=None,
        like=None,
        version=ACTUAL,
        like_version=None,
    )
    return edit


_SUMMARY_COLUMNS = {c.name: c for c in TABLES[SUMMARY].columns.values() if c.editable}


def _path_cell(path: tuple[Any, ...]) -> dict[str, Scalar] | None:
    """The cell (with its level) a (supplier, brand, family, month) path names, checked
    once a path; None for a path that names none."""
    try:
        cell = _PLAIN_CELLS.get(path, _UNSEEN)
    except TypeError:  # a list or an object where a text belongs
        return None
    if cell is _UNSEEN:
        cell = _checked_cell(path)
        if len(_PLAIN_CELLS) >= 65_536:
            _PLAIN_CELLS.clear()
        _PLAIN_CELLS[path] = cell
    return cell


# The journal's compact form of a block of plain cell edits: one list per field.
BLOCK_COLUMNS = ("column", "spread", *CELL_COORDINATES, "value")


def block_columns(edits: tuple[Edit, ...]) -> dict[str, list[Any]] | None:
    """A block of plain summary-cell edits as columns (a paste's journal entry: 40 % of
    the bytes, read in about half the time); None unless each edit is one that
    `block_edits` reads back equal."""
    if not edits:
        return None
    rows = []
    for edit in edits:
        condition = edit.condition
        plain = (
            edit.table == SUMMARY
            and edit.spread in _PLAIN_SPREADS
            and edit.expect is None
            and edit.like is None
            and edit.like_version is None
            and edit.version == ACTUAL
            and type(edit.value) in (str, int)
            and condition.keys() == _CELL_NAMES
        )
        if not plain:
            return None
        path = (condition["supplier"], condition["brand"], condition["family"], condition["month"])
        if _path_cell(path) != condition:
            return None
        rows.append((edit.column, edit.spread, *path, edit.value))
    return dict(zip(BLOCK_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))


def block_edits(columns: Any) -> tuple[Edit, ...] | None:
    """The edits `block_columns` wrote, each checked as plain_cell_edit checks it; None
    for anything else."""
    if type(columns) is not dict or columns.keys() != set(BLOCK_COLUMNS):
        return None
    lists = [columns[name] for name in BLOCK_COLUMNS]
    if any(type(each) is not list for each in lists) or len(set(map(len, lists))) != 1:
        return None
    edits = []
    for name, spread, supplier, brand, family, month, raw in zip(*lists, strict=True):
        column = _SUMMARY_COLUMNS.get(name) if type(name) is str else None
        if column is None or type(spread) is not str or spread not in _PLAIN_SPREADS:
            return None
        cell = _path_cell((supplier, brand, family, month))
        value = _plain_value(column, raw) if type(raw) is not float else None  # floats: inexact
        if cell is None or value is None:
            return None
        edits.append(_plain_edit(column.name, value, dict(cell), spread))
    return tuple(edits) or None


_PLAIN_CELLS: dict[tuple[Any, ...], dict[str, Scalar] | None] = {}  # checked once a path
_UNSEEN: Any = object()


def _checked_cell(path: tuple[Any, ...]) -> dict[str, Scalar] | None:
    """The cell a (supplier, brand, family, month) path names, or None."""
    supplier, brand, family, month = path
    if not all(map(_checked_text, _CELL_COLUMNS, path)):
        return None
    if not _whole_path(supplier, brand, family):
        return None
    cell = {"supplier": supplier, "brand": brand, "family": family, "month": month}
    cell["level"] = node_level(cell)
    return cell


_CELL_COLUMNS = [TABLES[SUMMARY].columns[name] for name in CELL_COORDINATES]


def _checked_text(column: Column, text: Any) -> bool:
    """Is `text` None, or a condition value `column` takes as it is?"""
    if text is None:
        return True
    try:
        return type(text) is str and _condition_text(column, text) == text
    except ProtocolError:
        return False


def _plain_value(column: Column, value: Any) -> Scalar:
    """The value as coerce_value writes it for `column`; None for one it refuses."""
    if column.type == "decimal":
        # the journal's text, or a client's exact number with the column's places, is
        # already as coerce_value writes it: one pattern match instead of Decimal work
        text = value if type(value) is str else str(value) if type(value) is Decimal else None
        if text is not None and _in_written_form(column, text):
            return text
    try:
        value = coerce_value(column, value)
        check_written(column, value)
    except ProtocolError:
        return None
    return value


def _in_written_form(column: Column, text: str) -> bool:
    """Is `text` decimal text as coerce_value writes it for `column`?"""
    negative_zero = text[:1] == "-" and not text.strip("-0.")  # written 0.00
    return _written_form(column).fullmatch(text) is not None and not negative_zero


@cache
def _written_form(column: Column) -> re.Pattern[str]:
    """Decimal text as coerce_value writes it: no leading zeros, exactly `scale` places,
    fewer integer digits than the column's bound has (so always within it)."""
    digits = len(str(int(max_abs(column)))) - 1
    places = rf"\.[0-9]{{{column.scale}}}" if column.scale else ""
    return re.compile(rf"-?(0|[1-9][0-9]{{0,{digits - 1}}}){places}", re.ASCII)


def _block_edit(raw: Any, index: int) -> Edit:
    """One edit of a block, checked fully; a ProtocolError names its index."""
    try:
        if isinstance(raw, dict) and isinstance(raw.get("condition"), str):
            # text goes through DuckDB's parser: 10,000 of them would stall the edge
            raise ProtocolError(
                "bad_condition", "a block edit names each cell with an object condition"
            )
        edit = parse_edit(raw)
        if not is_cell_edit(edit):
            raise ProtocolError(
                "not_a_cell", "a block edit changes summary cells and sales rows named by sale_id"
            )
    except ProtocolError as exc:
        message = f"edit {index}: {exc.message}"
        raise ProtocolError(exc.code, message, **exc.details, index=index) from exc
    return edit


def is_cell_edit(edit: Edit) -> bool:
    """A summary-cell edit, or an edit of one sales row named by its sale_id."""
    if TABLES[edit.table].summary:
        return True
    return (
        edit.table == "sales"
        and list(edit.condition) == ["sale_id"]
        and edit.condition["sale_id"] is not None
    )


def parse_hold(message: Any) -> Hold:
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a hold must be a JSON object")
    on = message.get("on")
    if not isinstance(on, bool):  # required: a hold without it must not silently hold
        raise ProtocolError("bad_message", "'on' must be true (hold) or false (release)")
    condition = parse_condition(TABLES[SUMMARY], message.get("condition"))
    return Hold(summary_cell(condition), on)


def parse_edit(message: Any) -> Edit:
    """Check an edit against the catalog; raise ProtocolError with a precise code."""
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "an edit must be a JSON object")
    table = _table(message.get("table"))
    column = _editable_column(table, message.get("column"))
    if "value" not in message:
        raise ProtocolError("invalid_value", "missing 'value'")
    spread = message.get("spread") or "proportional"
    if spread not in SPREAD_METHODS:
        raise ProtocolError(
            "unknown_spread", f"spread must be one of {', '.join(SPREAD_METHODS)}, got {spread!r}"
        )
    if spread in ("percent", "like") and not table.summary:
        raise ProtocolError("unknown_spread", f"spread {spread!r} changes summary cells only")
    if spread == "percent":
        value = _percent(message["value"])
    else:
        value = coerce_value(column, message["value"])
        check_written(column, value)
    condition, period = _period_of(table, message.get("condition"))
    condition = parse_condition(table, condition)
    expect = message.get("expect")
    if expect is not None:
        expect = coerce_value(column, expect, what="expect")
    if table.summary:
        condition = summary_cell(condition)
        if period is not None and MONTH_TEXT.fullmatch(period):
            condition["month"] = period  # a month named as a period
        elif period is not None:
            condition["period"] = period
    like, like_version = None, None
    if spread == "like":
        reference = message.get("like")
        if isinstance(reference, dict) and set(reference) == {"version"}:
            like_version = version_name(reference["version"], "like.version")
        else:
            like = _like(reference, condition)
    return Edit(
        table.name, column.name, value, condition, spread, expect, like, like_version=like_version
    )


def _period_of(table: Table, condition: Any) -> tuple[Any, str | None]:
    """A summary condition's `period` (a year "2025", a quarter "2025-Q1" or a month),
    taken out of it: the cell is the all-months cell of the node, restricted to those
    months."""
    if not (table.summary and isinstance(condition, dict) and "period" in condition):
        return condition, None
    rest = {k: v for k, v in condition.items() if k != "period"}
    period = condition["period"]
    if not isinstance(period, str) or not _PERIOD_TEXT.fullmatch(period):
        raise ProtocolError(
            "bad_condition", "period is a year (2025), a quarter (2025-Q1) or a month (2025-03)"
        )
    if rest.get("month") is not None:
        raise ProtocolError("bad_condition", "name a period or a month, not both")
    rest.pop("month", None)
    return rest, period


def period_months(period: str | None) -> frozenset[str] | None:
    """The months of a year or quarter period; None for no period."""
    if period is None:
        return None
    year, _, quarter = period.partition("-Q")
    first, last = (1, 12) if not quarter else (3 * int(quarter) - 2, 3 * int(quarter))
    return frozenset(f"{year}-{m:02d}" for m in range(first, last + 1))


def _like(reference: Any, cell: dict[str, Scalar]) -> str:
    """The period a `like` spread takes its mix from: {"period": …}, another period of the
    edited cell's kind (a month for a month cell, a quarter for a quarter, a year for a
    year)."""
    if not isinstance(reference, dict) or set(reference) != {"period"}:
        raise ProtocolError(
            "bad_message",
            "spread 'like' needs 'like': {\"period\": \"YYYY-MM\"} (another period) or "
            '{"version": "actual"} (another version)',
        )
    period = reference["period"]
    own = cell.get("period") or cell.get("month")
    if own is None:
        raise ProtocolError(
            "bad_message",
            "spread 'like' changes a month, quarter or year, not the all-months total",
        )
    if not isinstance(period, str) or _period_kind(period) != _period_kind(own):  # type: ignore[arg-type]
        raise ProtocolError(
            "bad_message",
            f"'like' names a period of the same kind as {own}: a month, a quarter or a year",
        )
    if period == own:
        raise ProtocolError("bad_message", "spread 'like' takes the mix of another period")
    return period


def _period_kind(period: str) -> str | None:
    if MONTH_TEXT.fullmatch(period):
        return "month"
    if _PERIOD_TEXT.fullmatch(period):
        return "quarter" if "-Q" in period else "year"
    return None


def _percent(value: Any) -> str:
    """A percent change: a number from -100 to 10,000 with at most 4 decimal places."""
    percent = coerce_value(PERCENT, value)
    if Decimal(percent) < PERCENT.min_value:  # type: ignore[arg-type, operator]
        raise ProtocolError(
            "invalid_value",
            f"value for a percent spread: {percent} takes the cell below zero; -100 empties it",
            column="percent",
        )
    return percent  # type: ignore[return-value]


def _table(name: Any) -> Table:
    if not isinstance(name, str) or not name:
        raise ProtocolError("bad_message", "'table' must be a non-empty string")
    table = TABLES.get(name)
    if table is None:
        raise ProtocolError(
            "unknown_table", f"unknown table {name!r}; tables: {', '.join(sorted(TABLES))}"
        )
    return table


def _editable_column(table: Table, name: Any) -> Column:
    if not isinstance(name, str) or not name:
        raise ProtocolError("bad_message", "'column' must be a non-empty string")
    column = table.column(name)
    if column is None:
        raise ProtocolError("unknown_column", f"table {table.name!r} has no column {name!r}")
    if not column.editable:
        editable = ", ".join(c.name for c in table.columns.values() if c.editable)
        raise ProtocolError(
            "not_editable",
            f"column {name!r} of {table.name!r} is not editable; editable: {editable}",
        )
    return column


def parse_condition(table: Table, condition: Any) -> dict[str, Scalar]:
    """An object of column -> value (null means IS NULL), columns from the catalog."""
    if condition is None or condition == {}:
        if table.summary:
            return {}
        raise ProtocolError(
            "condition_required", f"edits of {table.name!r} need a condition naming the rows"
        )
    if isinstance(condition, str):
        expr = parse_text_condition(table, condition)
        simple = equalities(expr)
        # simple conjunctions take the object form; the rest travels as checked text
        return simple if simple is not None else {WHERE: condition}
    if not isinstance(condition, dict):
        raise ProtocolError("bad_condition", "condition must be an object of column -> value")
    parsed: dict[str, Scalar] = {}
    if set(condition) == {WHERE} and isinstance(condition[WHERE], str):
        return parse_condition(table, condition[WHERE])
    columns = table.columns
    for name, value in condition.items():
        column = columns.get(name)
        if column is None:
            raise ProtocolError(
                "unknown_column", f"condition names unknown column {name!r} of {table.name!r}"
            )
        if value is None:
            parsed[name] = None
            continue
        if isinstance(value, dict | list):
            raise ProtocolError("bad_condition", f"condition value for {name!r} must be a scalar")
        try:
            parsed[name] = (
                _condition_text(column, value)
                if isinstance(value, str) and column.type in ("varchar", "month")
                else coerce_value(column, value, what="condition value")
            )
        except ProtocolError as exc:
            raise ProtocolError("bad_condition", exc.message, column=name) from exc
    return parsed


_CHECKED_TEXT: dict[tuple[str, str], Scalar] = {}  # (column type, text) -> its value


def _condition_text(column: Column, value: str) -> Scalar:
    """A text condition value, checked once: a paste names the same suppliers, brands
    and months again and again. (Checks of text and months depend on the type alone.)"""
    key = (column.type, value)
    found = _CHECKED_TEXT.get(key)
    if found is None:
        found = coerce_value(column, value, what="condition value")
        if len(_CHECKED_TEXT) >= 65_536:
            _CHECKED_TEXT.clear()
        _CHECKED_TEXT[key] = found
    return found


_CELL_NAMES = frozenset(CELL_KEY)


def summary_cell(condition: dict[str, Scalar]) -> dict[str, Scalar]:
    """The one summary cell a condition names: supplier/brand/family/month (missing = all)
    with its level. Rejects holes such as a family without its brand."""
    if WHERE in condition:
        raise ProtocolError("not_a_cell", "a summary edit names one cell: supplier = … AND …")
    if not condition.keys() <= _CELL_NAMES:
        extra = sorted(set(condition) - _CELL_NAMES)
        raise ProtocolError(
            "not_a_cell", f"a summary cell is named by supplier, brand, family, month; not {extra}"
        )
    cell: dict[str, Scalar] = {name: condition.get(name) for name in (*HIERARCHY, "month")}
    if not _whole_path(*(cell[name] for name in HIERARCHY)):
        raise ProtocolError(
            "not_a_cell",
            "a summary cell names its whole path: family needs brand, brand needs supplier",
        )
    level = node_level(cell)
    given = condition.get("level")
    if given is not None and given != level:
        raise ProtocolError(
            "not_a_cell", f"level {given} does not match the named node (level {level})"
        )
    cell["level"] = level
    return cell


def _whole_path(supplier: Scalar, brand: Scalar, family: Scalar) -> bool:
    """Does a cell name its whole path (a family its brand, a brand its supplier)?"""
    return not ((family is not None and brand is None) or (brand is not None and supplier is None))


def node_level(cell: dict[str, Scalar]) -> int:
    if cell.get("family") is not None:
        return LEVEL_FAMILY
    if cell.get("brand") is not None:
        return LEVEL_BRAND
    if cell.get("supplier") is not None:
        return LEVEL_SUPPLIER
    return LEVEL_TOTAL


__all__ = [
    "SPREAD_METHODS",
    "SUMMARY",
    "Edit",
    "EditMany",
    "Hold",
    "parse_edit",
    "parse_edit_many",
    "parse_hold",
    "period_months",
    "summary_cell",
]
