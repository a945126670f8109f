"""The original naive design, measured in-process on a copy of the DuckDB file (no
server): one UPDATE per edit, then a full GROUPING SETS recompute of the summary,
one transaction per edit."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.server import DB_NAME
from bench.stats import summarize
from seed.schema import rebuild_summary


def run_baseline(
    db: Path, scratch: Path, seconds: float = 5.0, max_edits: int = 500
) -> dict[str, Any]:
    """Edits per second the naive design sustains, applied back to back."""
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch / DB_NAME
    shutil.copy(db, copy)
    rng = random.Random(7)
    latencies: list[float] = []
    try:
        with duckdb.connect(str(copy)) as con:
            sales = con.execute("SELECT max(sale_id) FROM sales").fetchone()[0]  # type: ignore[index]
            _naive_edit(con, rng, sales)  # warm the caches like the server's warm-up does
            cpu_before = time.process_time()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds and len(latencies) < max_edits:
                t = time.perf_counter()
                _naive_edit(con, rng, sales)
                latencies.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            threads = con.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "design": "UPDATE sales per edit + DELETE/INSERT the whole summary from "
        "sales_summary_fresh, one transaction per edit",
        "sales": sales,
        "edits": len(latencies),
        "seconds": round(elapsed, 3),
        "edits_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms": summarize(latencies),
        "cpu_pct": round(100 * cpu / elapsed, 1),
        "duckdb_threads": threads,
    }


def _naive_edit(con: duckdb.DuckDBPyConnection, rng: random.Random, sales: int) -> None:
    con.execute("BEGIN TRANSACTION")
    con.execute(
        "UPDATE sales SET quantity = ? WHERE sale_id = ?",
        [rng.randint(1, 50), rng.randint(1, sales)],
    )
    rebuild_summary(con)  # DELETE, then INSERT the GROUPING SETS query
    con.execute("COMMIT")
