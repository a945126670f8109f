"""DuckDB's own SQL parser for text conditions: `json_serialize_sql` on an in-memory
connection per thread (no database is touched)."""

from __future__ import annotations

import threading
from typing import Any

import orjson

_local = threading.local()


def serialize_sql(sql: str) -> dict[str, Any]:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb  # on first use: `import server` (the supervisor too) stays without it

        con = _local.con = duckdb.connect()
    return orjson.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])  # type: ignore[index]
