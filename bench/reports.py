"""Time every report, the summary rebuild and a CSV import on a large database.

    python -m bench.reports --data-dir /tmp/bench-1m            # seeds 1,000,000 rows if empty
    python -m bench.reports --data-dir D --runs 20 --import-rows 1000000

Reports run read-only on the database in the data dir, over the whole period and over
one quarter. The summary rebuild and the imports run on a copy, so the data dir is
left as it was. Not part of the test suite: timings belong here, not in assertions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from protocol.actions import ImportSpec, new_import_id
from server.analytics.csv_import import import_file, refresh_summary
from server.analytics.reports import catalog, parse_params, run_report

QUARTER = {"start_date": "2025-04-01", "end_date": "2025-06-30"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--sales", type=int, default=1_000_000, help="rows to seed if empty")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per report")
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="0 skips imports")
    args = parser.parse_args(argv)
    database = args.data_dir / "ducksheet.duckdb"
    if not database.exists():
        seed(args.data_dir, args.sales)
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM sales").fetchone()[0]  # type: ignore[index]
        print(f"{database}: {rows:,} sales rows; {args.runs} runs per report\n")
        bench_reports(con, args.runs)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as scratch:
        copy = Path(scratch) / "copy.duckdb"
        shutil.copy(database, copy)
        bench_rebuild(copy, args.runs)
        if args.import_rows:
            bench_import(copy, Path(scratch), args.import_rows)
    return 0


def seed(data_dir: Path, sales: int) -> None:
    print(f"seeding {sales:,} sales rows into {data_dir}", flush=True)
    command = [sys.executable, "-m", "server.cli", "seed", "--data-dir", str(data_dir)]
    subprocess.run([*command, "--sales", str(sales)], check=True)


def timings(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, p95) in milliseconds of `runs` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def bench_reports(con: duckdb.DuckDBPyConnection, runs: int) -> None:
    print(f"{'report':<26}{'all: median':>13}{'p95':>9}{'quarter: median':>18}{'p95':>9}  rows")
    for name, report in catalog().items():
        whole = parse_params(report, {})
        quarter = parse_params(report, QUARTER)
        median, p95 = timings(lambda r=report, p=whole: run_report(con, r, p), runs)
        q_median, q_p95 = timings(lambda r=report, p=quarter: run_report(con, r, p), runs)
        count = len(run_report(con, report, whole)["rows"])
        cells = f"{median:>10.1f} ms{p95:>6.1f} ms{q_median:>15.1f} ms{q_p95:>6.1f} ms"
        print(f"{name:<26}{cells}  {count}")
    print()


def bench_rebuild(database: Path, runs: int) -> None:
    with duckdb.connect(str(database)) as con:

        def rebuild() -> None:
            con.execute("BEGIN TRANSACTION")
            refresh_summary(con)
            con.execute("ROLLBACK")

        median, p95 = timings(rebuild, runs)
    print(
        f"summary rebuild (in a transaction, rolled back): median {median:.0f} ms, p95 {p95:.0f} ms"
    )


def bench_import(database: Path, scratch: Path, rows: int) -> None:
    csv_path = scratch / "sales.csv"
    with duckdb.connect(str(database)) as con:
        first = con.execute("SELECT max(sale_id) + 1 FROM sales").fetchone()[0]  # type: ignore[index]
        con.execute(
            """
            COPY (
                SELECT sale_id, invoice_date, product_id, customer_id, quantity, net_price
                FROM sales ORDER BY sale_id LIMIT ?
            ) TO ? (FORMAT csv, HEADER true)
            """,
            [rows, str(csv_path)],
        )
        # New keys: the same rows shifted past the largest sale_id.
        con.execute(
            "COPY (SELECT * REPLACE (sale_id + ? AS sale_id) FROM read_csv(?)) "
            "TO ? (FORMAT csv, HEADER true)",
            [first, str(csv_path), str(scratch / "new.csv")],
        )
    size = (scratch / "new.csv").stat().st_size / 1e6
    runs = (("fast", False, "new rows"), ("validate", True, "upsert: every key exists now"))
    for mode, upsert, what in runs:
        spec = ImportSpec(
            "sales", str(scratch / "new.csv"), mode, "new.csv", new_import_id(), upsert
        )
        print(f"import of {rows:,} sales rows ({size:.0f} MB), mode {mode}, {what}:")
        started = time.perf_counter()
        stats = import_file(database, spec, progress=lambda m: print("  ", m, flush=True))
        print(f"   total {time.perf_counter() - started:.2f}s (incl. commit + checkpoint): {stats}")


if __name__ == "__main__":
    sys.exit(main())
