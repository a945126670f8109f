"""Named analytics reports (DESIGN §8): one SQL file each under server/analytics/reports/.

A report file starts with comment lines: the description, then any extra parameter as
`-- @param NAME integer default=D min=A max=B: what it does`. Every report takes the
optional `start_date` and `end_date` (YYYY-MM-DD, inclusive). Client values reach the
SQL only as named parameters ($start_date, $end_date, $limit, ...), never as text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.errors import ProtocolError
from server.analytics.cells import inert_text

if TYPE_CHECKING:  # web processes check and render reports without DuckDB
    import duckdb

REPORTS_DIR = Path(__file__).resolve().parent / "reports"
FORMATS = ("json", "csv")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", re.ASCII)
_INTEGER = re.compile(r"^-?[0-9]{1,18}$", re.ASCII)
_PARAM_LINE = re.compile(
    r"^--\s*@param\s+(?P<name>[a-z_]+)\s+integer\s+default=(?P<default>-?\d+)"
    r"\s+min=(?P<low>-?\d+)\s+max=(?P<high>-?\d+)\s*:\s*(?P<doc>.+)$"
)
_PLACEHOLDER = re.compile(r"\$([a-z_]+)")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "date" | "integer"
    description: str
    default: int | None = None
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == "integer":
            out.update(default=self.default, min=self.minimum, max=self.maximum)
        out["description"] = self.description
        return out


DATE_PARAMS = (
    Param("start_date", "date", "first invoice date included (YYYY-MM-DD); default: no bound"),
    Param("end_date", "date", "last invoice date included (YYYY-MM-DD); default: no bound"),
)


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": [p.describe() for p in self.params],
        }


def parse_report(name: str, sql: str) -> Report:
    """A report from its SQL text; checks that the placeholders match the parameters."""
    description: list[str] = []
    params = list(DATE_PARAMS)
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        match = _PARAM_LINE.match(line)
        if match:
            params.append(
                Param(
                    match["name"],
                    "integer",
                    match["doc"].strip(),
                    int(match["default"]),
                    int(match["low"]),
                    int(match["high"]),
                )
            )
        elif "@param" in line:
            raise ValueError(f"report {name}: malformed parameter line {line!r}")
        else:
            description.append(line.removeprefix("--").strip())
    used = set(_PLACEHOLDER.findall(sql))
    declared = {p.name for p in params}
    if used != declared:
        raise ValueError(f"report {name}: SQL uses {sorted(used)}, declares {sorted(declared)}")
    return Report(name, " ".join(description).strip(), tuple(params), sql)


@cache
def catalog() -> dict[str, Report]:
    """Every report, by name (the SQL file's stem), in name order."""
    return {
        path.stem: parse_report(path.stem, path.read_text())
        for path in sorted(REPORTS_DIR.glob("*.sql"))
    }


def get_report(name: str) -> Report:
    report = catalog().get(name)
    if report is None:
        raise ProtocolError(
            "not_found", f"no report {name[:80]!r}; reports: {', '.join(catalog())}"
        )
    return report


def parse_params(report: Report, query: Mapping[str, str]) -> dict[str, Any]:
    """The report's parameters from a query string: validated, with defaults filled in.
    `format` and `min_seq` are not report parameters and are ignored here."""
    known = {p.name: p for p in report.params}
    unknown = sorted(set(query) - set(known) - {"format", "min_seq"})
    if unknown:
        raise ProtocolError(
            "invalid_value",
            f"unknown parameter {unknown[0][:40]!r} for report {report.name!r}; "
            f"parameters: {', '.join(known)}",
        )
    values: dict[str, Any] = {}
    for param in report.params:
        raw = query.get(param.name)
        values[param.name] = _parse_value(param, raw) if raw not in (None, "") else param.default
    start, end = values["start_date"], values["end_date"]
    if start is not None and end is not None and start > end:
        raise ProtocolError(
            "invalid_value", f"start_date {start} is after end_date {end}", parameter="start_date"
        )
    return values


def _parse_value(param: Param, raw: str) -> Any:
    def bad(reason: str) -> ProtocolError:
        return ProtocolError("invalid_value", f"{param.name}: {reason}", parameter=param.name)

    if param.type == "date":
        if not _DATE.match(raw):
            raise bad(f"{raw[:40]!r} is not a date YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(raw)
        except ValueError as exc:
            raise bad(f"{raw!r} is not a valid date") from exc
    if not _INTEGER.match(raw):
        raise bad(f"{raw[:40]!r} is not a whole number")
    value = int(raw)
    assert param.minimum is not None and param.maximum is not None
    if not param.minimum <= value <= param.maximum:
        raise bad(f"must be between {param.minimum} and {param.maximum}")
    return value


def run_report(cur: duckdb.DuckDBPyConnection, report: Report, params: dict[str, Any]) -> dict:
    """Run a report on a reader cursor: {"report", "parameters", "columns", "rows"}."""
    result = cur.execute(report.sql, params)
    columns = [d[0] for d in result.description or ()]
    rows = result.fetchall()
    return {
        "report": report.name,
        "parameters": {k: _csv_text(v) if isinstance(v, dt.date) else v for k, v in params.items()},
        "columns": columns,
        "rows": [dict(zip(columns, row, strict=True)) for row in rows],
    }


def to_csv(data: dict[str, Any]) -> str:
    """A report's or a comparison's result as CSV text: a header, then one line per row
    (null = empty), text a spreadsheet would run as a formula made inert."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = data["columns"]
    writer.writerow(columns)
    for row in data["rows"]:
        writer.writerow(["" if row[c] is None else _csv_text(row[c]) for c in columns])
    return out.getvalue()


def _csv_text(value: Any) -> str:
    if isinstance(value, str):
        return inert_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
