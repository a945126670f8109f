"""Typed settings, read once from flags and DUCKSHEET_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None  # unset: start the embedded redis-server
    appendfsync: str = "everysec"  # AOF policy of the embedded Redis
    seed_sales: int = 200_000  # rows generated when the database is empty
    seed: int = 42
    batch_size: int = 2000  # most requests the writer applies in one transaction
    group_commit_ms: int = 250  # from one group commit's start to the next: more gathers more
    max_rows_per_edit: int = 10_000  # base-table edits matching more rows are rejected
    base_rows_broadcast: int = 200  # changed base rows sent per update, then truncated
    view_page_max: int = 1000
    send_queue: int = 1000  # frames buffered per socket before it is closed as too slow
    response_retention: int = 100_000  # response_duck entries kept for resume
    read_threads: int = 4
    duckdb_threads: int = 0  # DuckDB's own worker threads; 0: one per core (see README)
    duckdb_memory_mb: int = 128  # DuckDB's memory_limit in MB; 0: DuckDB's own (80 % of RAM)
    write_niceness: int = 10  # added to the niceness of the thread that writes DuckDB (Linux)
    redis_connections: int = 64  # pooled Redis connections; more commands wait for one
    tokens: str | None = None  # "name:role:token,..."; none (and no file) = open mode
    tokens_file: Path | None = None  # one name:role:token a line
    metrics_token: str | None = None  # Bearer token for GET /metrics only (admins may too)
    allowed_origins: str = ""  # comma-separated; the server's own origin is always allowed
    max_connections: int = 2000  # WebSocket sessions at once
    edit_rate: int = 200  # edits and holds per second per connection (token bucket)
    edit_burst: int = 400
    max_body: int = 1 << 20  # REST request bodies (413 above)
    max_edits_per_request: int = 10_000  # edits in one block edit (edit_many)
    max_block_body: int = 2 << 20  # POST /update_cells bodies and WebSocket frames
    undo_depth: int = 100  # undo steps kept per user (redo steps too)
    ws_compression: bool = True  # permessage-deflate, each message compressed once
    web_workers: int = 1  # `serve`: web processes beside one data process; 0 = one process
    data_listen: str = ""  # data process's internal API "host:port"; "" = unix socket

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "ducksheet.duckdb"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then DUCKSHEET_<NAME> (and REDIS_URL), then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"DUCKSHEET_{f.name.upper()}")
            if f.name == "redis_url":
                raw = raw or env.get("REDIS_URL")
            if raw:
                values[f.name] = _convert(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("data_dir", "tokens_file"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        return replace(cls(), **values)


def _convert(name: str, raw: str) -> Any:
    default = getattr(Settings(), name)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError as exc:
            raise SystemExit(f"DUCKSHEET_{name.upper()} must be an integer, got {raw!r}") from exc
    if isinstance(default, Path):
        return Path(raw)
    return raw
