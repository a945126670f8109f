"""JSON encoding for frames and stream payloads (orjson)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson

from protocol.errors import ProtocolError


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Money is exact cents; a double holds any cent amount below 2**53 / 100 exactly
        # enough that its shortest repr is the same decimal text.
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def dumps_text(value: Any) -> str:
    return dumps(value).decode()


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc.msg}") from exc


NO_SEQ = "0-0"  # the seq of a database no request has changed yet


def parse_seq(seq: str) -> tuple[int, int]:
    """A stream id "<ms>-<n>" as a comparable pair; raises ProtocolError when malformed."""
    ms, sep, n = seq.partition("-")
    if not ms.isdigit() or (sep and not n.isdigit()) or len(seq) > 41:
        raise ProtocolError("bad_message", f"not a sequence number: {seq[:45]!r}")
    pair = int(ms), int(n or 0)
    if max(pair) >= 1 << 64:  # Redis stream ids are two 64-bit numbers
        raise ProtocolError("bad_message", f"not a sequence number: {seq[:45]!r}")
    return pair
