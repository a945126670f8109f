"""DuckDB's memory_limit: 128 MB unless DUCKSHEET_DUCKDB_MEMORY_MB says otherwise; 0
keeps DuckDB's own (80 % of the machine's memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Settings
from server.store.db import Database


@pytest.mark.parametrize(
    ("environ", "shown"),
    [({}, "122.0 MiB"), ({"DUCKSHEET_DUCKDB_MEMORY_MB": "64"}, "61.0 MiB"), ({}, None)],
    ids=["default", "64", "0"],
)
def test_the_setting_bounds_duckdb_memory(
    tmp_path: Path, environ: dict[str, str], shown: str | None
) -> None:
    memory_mb = Settings.from_env(environ).duckdb_memory_mb if shown else 0
    db = Database(tmp_path / "ducksheet.duckdb", memory_mb=memory_mb)
    db.open(seed_sales=100)
    try:
        found = db.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[index]
        assert found == shown if shown else found not in ("122.0 MiB", "61.0 MiB")
    finally:
        db.close()
