"""JSON for frames and stream payloads: encoded by orjson, read exactly (msgspec)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from protocol.errors import ProtocolError


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Money goes out as a JSON number written digit for digit from the Decimal (never
        # through a float): "99999999999999.99" stays exactly that.
        return orjson.Fragment(decimal_text(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def dumps_text(value: Any) -> str:
    return dumps(value).decode()


def decimal_text(value: Decimal) -> str:
    """The JSON number text of a finite Decimal, in plain notation."""
    if not value.is_finite():
        raise TypeError("NaN and infinities have no JSON number")
    return format(value, "f")


def cents_json(cents: int) -> orjson.Fragment:
    """An amount of cents as the JSON number `decimal_text` writes for it ("-0.05"),
    ready for `dumps` (no Decimal on the way: the writer sends thousands a second)."""
    whole, part = divmod(abs(cents), 100)
    return orjson.Fragment(f"{'-' if cents < 0 else ''}{whole}.{part:02d}")


def loads(data: str | bytes) -> Any:
    """Parse JSON, strictly (no NaN or Infinity, no trailing text, UTF-8 only). Numbers
    with a fraction or exponent are read exactly as Decimal, each from its own text (a
    double would round them): a client's 99999999999999.99 stays 99999999999999.99.
    Integers are ints of up to 4,300 digits (Python's own limit: longer ones are
    refused, as are fractions past a double's range). One pass in C (msgspec)."""
    try:
        return _EXACT.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", "not valid JSON: a number or nesting too large") from exc


MAX_EXPONENT = 308  # past a double's range: refused (no Decimal arithmetic on 1e400)


def _exact_float(text: str) -> Decimal:
    value = Decimal(text)
    if value and value.adjusted() > MAX_EXPONENT:  # 0E+310 is a zero, as a double reads it
        raise ValueError(text)
    return value


_EXACT = msgspec.json.Decoder(float_hook=_exact_float)


EXACT_FLOAT = 1e13  # a decimal of at most 15 digits (cents up to here) survives a double


def loads_published(data: str | bytes) -> Any:
    """Parse a payload the writer published, for passing on: numbers stay doubles when
    every one is small enough that a double prints back as the same decimal (money below
    10^13 with its cents); otherwise exactly, as `loads`."""
    value = orjson.loads(data)
    if _floats_exact(value):
        return value
    return loads(data)


def _floats_exact(value: Any) -> bool:
    if isinstance(value, float):
        return -EXACT_FLOAT < value < EXACT_FLOAT
    if isinstance(value, dict):
        return all(_floats_exact(v) for v in value.values())
    if isinstance(value, list):
        return all(_floats_exact(v) for v in value)
    return True


_SEQ = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?", re.ASCII)
MAX_ID_PART = (1 << 64) - 1  # Redis stream ids are two unsigned 64-bit numbers


NO_SEQ = "0-0"  # the seq of a database no request has changed yet


def parse_seq(seq: str) -> tuple[int, int]:
    """A stream id "<ms>-<n>" (ASCII digits, each part an unsigned 64-bit number) as a
    comparable pair; raises ProtocolError when malformed."""
    match = _SEQ.fullmatch(seq) if isinstance(seq, str) else None
    if match is None:
        raise ProtocolError("bad_message", f"not a sequence number: {str(seq)[:45]!r}")
    pair = int(match[1]), int(match[2] or 0)
    if max(pair) > MAX_ID_PART:
        raise ProtocolError("bad_message", f"not a sequence number: {seq[:45]!r}")
    return pair


def next_seq(seq: str) -> str | None:
    """The smallest stream id after `seq` (for an exclusive range start), or None when
    `seq` is the largest id there can be."""
    ms, n = parse_seq(seq)
    if n < MAX_ID_PART:
        return f"{ms}-{n + 1}"
    if ms < MAX_ID_PART:
        return f"{ms + 1}-0"
    return None
