"""What `GET /history` asks (DESIGN §12): the events of one summary cell, one sales row,
or one user, newest first, paged by `before`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from protocol.catalog import SUMMARY, TABLES
from protocol.codec import parse_seq
from protocol.edits import parse_condition, summary_cell
from protocol.errors import ProtocolError
from protocol.values import Scalar

HISTORY_LIMIT = 1000
MAX_USER = 40


@dataclass(frozen=True)
class HistoryQuery:
    table: str | None  # SUMMARY or "sales"; None: the user's events
    condition: dict[str, Scalar]  # the summary cell (with level), or {"sale_id": n}
    user: str | None
    limit: int = 50
    before: str | None = None  # only events before this seq

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_history_query(raw: dict[str, Any]) -> HistoryQuery:
    table, user = raw.get("table"), raw.get("user")
    if user is not None and (not isinstance(user, str) or not 0 < len(user) <= MAX_USER):
        raise ProtocolError("bad_message", f"'user' must be a name of 1..{MAX_USER} characters")
    if table is None and user is None:
        raise ProtocolError("bad_message", "name a cell or row (table, condition) or a user")
    condition: dict[str, Scalar] = {}
    if table is not None:
        if table not in (SUMMARY, "sales"):
            raise ProtocolError("unknown_table", f"history is kept for {SUMMARY} and sales")
        condition = parse_condition(TABLES[table], raw.get("condition") or {})
        if table == SUMMARY:
            condition = summary_cell(condition)
        elif list(condition) != ["sale_id"] or condition["sale_id"] is None:
            raise ProtocolError("not_a_cell", "name one sales row by its sale_id")
    limit = raw.get("limit", 50)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= HISTORY_LIMIT:
        raise ProtocolError("bad_message", f"'limit' must be between 1 and {HISTORY_LIMIT}")
    before = raw.get("before")
    if before is not None:
        if not isinstance(before, str):
            raise ProtocolError("bad_message", "'before' must be a seq")
        parse_seq(before)
    return HistoryQuery(table, condition, user, limit, before)
