"""Client values checked and normalized for a catalog column."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import cache
from typing import Any

from protocol.catalog import Column
from protocol.errors import ProtocolError

MAX_TEXT = 200
# ASCII digits only: \d and str.isdigit() also accept superscripts and Arabic-Indic digits.
MONTH_TEXT = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f]")

Scalar = int | str | None
# What the storage types hold (DuckDB INTEGER, BIGINT; every DECIMAL is (18, scale)):
# a catalog bound never lets a value past these, whatever the column says.
STORAGE_MAX_ABS = {"integer": 2**31 - 1, "bigint": 2**63 - 1}


@cache  # columns are frozen catalog entries; a block edit asks 10,000 times
def max_abs(column: Column) -> int | Decimal:
    """The largest magnitude a value of `column` may have: its own bound, within storage
    (DECIMAL(p, s) holds 10**(p-s) - 10**-s at most)."""
    if column.type == "decimal":
        storage = Decimal(10) ** (column.precision - column.scale) - Decimal(1).scaleb(
            -column.scale
        )
        return min(Decimal(column.max_abs), storage)
    return min(column.max_abs, STORAGE_MAX_ABS.get(column.type, column.max_abs))


@cache
def _quantum(scale: int) -> Decimal:
    return Decimal(1).scaleb(-scale)


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
        bound = max_abs(column)
        if type(value) is int and -bound <= value <= bound:
            return value  # the common case, without Decimal arithmetic
        number = _to_decimal(value, bad, bound)
        if number != number.to_integral_value():
            raise bad(f"{_shown(value)} is not a whole number")
        return int(number)
    if kind == "decimal":
        number = _to_decimal(value, bad, max_abs(column))
        # in range, so the quantized number has at most 16 + scale digits: no overflow
        quantized = number.quantize(_quantum(column.scale))
        if number != quantized:
            raise bad(f"{_shown(value)} has more than {column.scale} decimal places")
        return str(quantized + 0)  # + 0: "-0.00" is "0.00"
    if not isinstance(value, str):
        raise bad(f"expected a string, got {type(value).__name__}")
    if kind == "date":
        return _date(value, bad)
    if kind == "month":
        if not MONTH_TEXT.fullmatch(value):
            raise bad(f"{value!r} is not a month 'YYYY-MM'")
        return value
    if len(value) > MAX_TEXT:
        raise bad(f"longer than {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise bad("control characters are not allowed")
    if not value.strip():
        raise bad("must not be blank")
    return value


def check_written(column: Column, value: Scalar, what: str = "value") -> None:
    """A value about to be stored in `column` (not just compared with it) must also keep
    the column's lower bound: quantities are never negative, in edits as in imports."""
    if column.min_value is not None and isinstance(value, int) and value < column.min_value:
        raise ProtocolError(
            "invalid_value",
            f"{what} for {column.name!r} ({column.type}): must be at least {column.min_value}",
            column=column.name,
        )


def _shown(value: Any) -> str:
    """A client's value in a message: short, and never a 4,000-digit echo."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_decimal(value: Any, bad: Any, max_abs: int | Decimal) -> Decimal:
    """The exact number a client sent, within ±max_abs; anything else is bad()."""
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("NaN and infinity are not numbers")
        # repr gives the shortest text that round-trips, i.e. what the client wrote.
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):  # a JSON number, read exactly by protocol.codec
        number = value
    elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip(" ")):
        number = Decimal(value.strip(" "))
    else:
        raise bad(f"{_shown(value)} is not a number")
    if not number.is_finite():
        raise bad("NaN and infinity are not numbers")
    # compare magnitudes before any arithmetic: 1E+308 must not reach quantize()
    if number and number.adjusted() > len(str(max_abs)):
        raise bad(f"magnitude above {max_abs}")
    if number.copy_abs() > max_abs:
        raise bad(f"magnitude above {max_abs}")
    if number and number.adjusted() < -40:
        raise bad(f"{_shown(value)} has too many decimal places")
    return number


def _date(value: str, bad: Any) -> str:
    if not _DATE.fullmatch(value):
        raise bad(f"{value!r} is not a date 'YYYY-MM-DD'")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise bad(f"{value!r} is not a valid date") from exc
