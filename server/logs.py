"""Logging setup: plain text by default, one JSON object a line when
DUCKSHEET_LOG_FORMAT=json, each carrying the id of the request being served.

`request_id` is a context variable: the edge sets it per HTTP request and per
WebSocket message, so every line logged while serving it names it. Log calls add
`extra={...}` fields (the stream id an edit got, the seq a batch was published as),
which the JSON lines carry as keys; that is how a pipeline follows one edit from the
edge (request_id, stream_id) to the writer (first/last stream id, seq) to the hub (seq).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import Any

import orjson

FORMATS = ("text", "json")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_format(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    chosen = env.get("DUCKSHEET_LOG_FORMAT", "text").strip().lower() or "text"
    if chosen not in FORMATS:
        raise SystemExit(f"DUCKSHEET_LOG_FORMAT must be one of {', '.join(FORMATS)}")
    return chosen


def log_level(environ: dict[str, str] | None = None) -> int:
    """DUCKSHEET_LOG_LEVEL (default info); debug adds a line per edit and per batch."""
    env = os.environ if environ is None else environ
    name = env.get("DUCKSHEET_LOG_LEVEL", "info").strip().upper() or "INFO"
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise SystemExit("DUCKSHEET_LOG_LEVEL must be debug, info, warning or error")
    return level


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True


def uvicorn_log_config(fmt: str) -> dict[str, Any] | None:
    """For uvicorn.Config(log_config=…): None in JSON mode, so uvicorn keeps the root
    handlers above instead of installing its own text ones."""
    from uvicorn.config import LOGGING_CONFIG

    return None if fmt == "json" else LOGGING_CONFIG
