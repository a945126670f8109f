"""Client values checked and normalized for a catalog column."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from protocol.catalog import Column
from protocol.errors import ProtocolError

MAX_TEXT = 200
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?$")

Scalar = int | str | None


def coerce_value(column: Column, value: Any, what: str = "value") -> Scalar:
    """Normalize a client value for `column`, or raise invalid_value."""

    def bad(reason: str) -> ProtocolError:
        return ProtocolError(
            "invalid_value",
            f"{what} for {column.name!r} ({column.type}): {reason}",
            column=column.name,
        )

    if value is None:
        raise bad("null is not allowed")
    if isinstance(value, bool):
        raise bad("booleans are not accepted")
    kind = column.type
    if kind in ("integer", "bigint"):
        number = _to_decimal(value, bad)
        if number != number.to_integral_value():
            raise bad(f"{value!r} is not a whole number")
        integer = int(number)
        if abs(integer) > column.max_abs:
            raise bad(f"magnitude above {column.max_abs}")
        return integer
    if kind == "decimal":
        number = _to_decimal(value, bad)
        quantum = Decimal(1).scaleb(-column.scale)
        if number != number.quantize(quantum):
            raise bad(f"{value!r} has more than {column.scale} decimal places")
        if abs(number) > column.max_abs:
            raise bad(f"magnitude above {column.max_abs}")
        return str(number.quantize(quantum))
    if not isinstance(value, str):
        raise bad(f"expected a string, got {type(value).__name__}")
    if kind == "date":
        return _date(value, bad)
    if kind == "month":
        if not _MONTH.match(value):
            raise bad(f"{value!r} is not a month 'YYYY-MM'")
        return value
    if len(value) > MAX_TEXT:
        raise bad(f"longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 for ch in value):
        raise bad("control characters are not allowed")
    if not value.strip():
        raise bad("must not be blank")
    return value


def _to_decimal(value: Any, bad: Any) -> Decimal:
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("NaN and infinity are not numbers")
        # repr gives the shortest text that round-trips, i.e. what the client wrote.
        return Decimal(repr(value))
    if isinstance(value, str) and _DECIMAL_TEXT.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation as exc:
            raise bad(f"{value!r} is not a number") from exc
    raise bad(f"{value!r} is not a number")


def _date(value: str, bad: Any) -> str:
    if not _DATE.match(value):
        raise bad(f"{value!r} is not a date 'YYYY-MM-DD'")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise bad(f"{value!r} is not a valid date") from exc
