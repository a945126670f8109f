"""Which library writes a large xlsx faster: XlsxWriter or openpyxl (write-only mode)?

    python -m bench.xlsx_writers --sales 1000000

Seeds a scratch database, then writes its `sales` table once per library, each in a
fresh process so that the peak memory of one does not count for the other. Prints
seconds, peak RSS and file size per library. Not part of the test run.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BATCH = 50_000
QUERY = (
    "SELECT sale_id, invoice_date, product_id, customer_id, quantity, net_price "
    "FROM sales ORDER BY sale_id"
)
HEADER = ["sale_id", "invoice_date", "product_id", "customer_id", "quantity", "net_price"]


def rows(database: Path):
    with duckdb.connect(str(database), read_only=True) as con:
        cursor = con.execute(QUERY)
        while batch := cursor.fetchmany(BATCH):
            yield from batch


def write_xlsxwriter(database: Path, out: Path) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(out), {"constant_memory": True})
    sheet = book.add_worksheet("sales")
    date = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, HEADER)
    for r, (sale_id, day, product, customer, quantity, price) in enumerate(rows(database), 1):
        sheet.write_number(r, 0, sale_id)
        sheet.write_datetime(r, 1, day, date)
        sheet.write_number(r, 2, product)
        sheet.write_number(r, 3, customer)
        sheet.write_number(r, 4, quantity)
        sheet.write_number(r, 5, float(price))
    book.close()


def write_openpyxl(database: Path, out: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("sales")
    sheet.append(HEADER)
    for sale_id, day, product, customer, quantity, price in rows(database):
        when = WriteOnlyCell(sheet, day)
        when.number_format = "yyyy-mm-dd"
        sheet.append([sale_id, when, product, customer, quantity, float(price)])
    book.save(str(out))


WRITERS = {"xlsxwriter": write_xlsxwriter, "openpyxl": write_openpyxl}


def measure_one(library: str, database: Path, out: Path) -> None:
    started = time.perf_counter()
    WRITERS[library](database, out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    size_mib = out.stat().st_size / 2**20
    print(
        f"{library:11} {seconds:7.1f} s wall  {cpu:7.1f} s CPU  "
        f"peak RSS {usage.ru_maxrss / 1024:6.0f} MiB  file {size_mib:5.1f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--one", choices=list(WRITERS), help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as scratch:
            measure_one(args.one, args.database, Path(scratch) / "out.xlsx")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch)
        seed = [sys.executable, "-m", "server.cli", "seed", "--data-dir", str(data)]
        subprocess.run([*seed, "--sales", str(args.sales)], check=True, capture_output=True)
        print(f"{args.sales:,} sales rows, 6 columns")
        for library in WRITERS:
            database = data / "ducksheet.duckdb"
            one = ["--one", library, "--database", str(database)]
            subprocess.run([sys.executable, "-m", "bench.xlsx_writers", *one], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
