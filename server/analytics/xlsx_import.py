"""xlsx imports: the first sheet of a workbook rewritten as the CSV file that the CSV
import (server.analytics.csv_import) then checks and loads, so both formats share one
set of rules and one validation log. Sheet row n becomes CSV line n, so the line
numbers of errors and of `validation_logs` are the sheet's row numbers.

Workbooks come from clients, so they are opened defensively: the zip directory is
checked before anything is inflated (entry count, declared sizes, compression ratio),
openpyxl parses the XML through defusedxml (no entity expansion), only cached cell
values are read (formulas are never evaluated), and the rows and the CSV written are
bounded while streaming, whatever the directory declared.
"""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from protocol.errors import ProtocolError
from server.analytics.csv_import import invalid

MAX_ENTRIES = 10_000  # files inside the zip
MAX_INFLATED = 4 << 30  # bytes all entries may declare, uncompressed
MAX_RATIO = 200  # uncompressed / compressed, for entries above RATIO_FROM bytes
RATIO_FROM = 1 << 20
MAX_ROWS = 1_048_576  # Excel's own limit
MAX_COLUMNS = 64  # far more than any importable table has
XLSX_MAGIC = b"PK\x03\x04"
# A line break inside a cell would split a CSV record over two lines and shift every
# later line number; it becomes a control character, which the import rejects (with
# the right row number) just as it rejects one in a CSV field.
LINE_BREAKS = str.maketrans({"\r": "\x1f", "\n": "\x1f"})


def is_xlsx(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == XLSX_MAGIC


def check_archive(path: Path) -> None:
    """Refuse zip bombs and non-workbooks from the directory alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise invalid(f"not a readable xlsx workbook: {exc}", line=1) from exc
    if len(entries) > MAX_ENTRIES:
        raise invalid(f"the workbook holds more than {MAX_ENTRIES} files", line=1)
    if sum(e.file_size for e in entries) > MAX_INFLATED:
        raise ProtocolError("too_big", "the workbook inflates to more than 4 GiB")
    for entry in entries:
        packed = max(entry.compress_size, 1)
        if entry.file_size > RATIO_FROM and entry.file_size / packed > MAX_RATIO:
            raise ProtocolError(
                "too_big", f"{entry.filename[:80]} inflates {entry.file_size // packed}-fold"
            )
    if "xl/workbook.xml" not in {e.filename for e in entries}:
        raise invalid("not an xlsx workbook (no xl/workbook.xml)", line=1)


def cell_text(value: Any) -> str:
    """A cell's cached value as the CSV import reads it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # refused where a number is expected
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)  # the shortest text that reads back as this double
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")  # not a date: refused with its row
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).translate(LINE_BREAKS)


def _rows(path: Path) -> Iterator[Sequence[Any]]:
    from openpyxl import load_workbook  # imported here: only xlsx imports need it

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a malformed workbook
        raise invalid(f"not a readable xlsx workbook: {type(exc).__name__}", line=1) from exc
    try:
        if not book.worksheets:
            raise invalid("the workbook has no sheet", line=1)
        yield from book.worksheets[0].iter_rows(values_only=True)
    finally:
        book.close()


def to_csv(source: Path, target: Path, max_bytes: int) -> int:
    """Write the first sheet of `source` as CSV to `target`; the number of lines written.
    Blank rows are kept (as rows of empty fields) where more rows follow, so numbers stay
    right, and dropped at the end; trailing empty cells are dropped."""
    check_archive(source)
    rows = blank = size = width = 0
    try:
        with target.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            for number, row in enumerate(_rows(source), 1):
                if number > MAX_ROWS:
                    raise ProtocolError("too_big", f"the sheet has more than {MAX_ROWS} rows")
                fields = [cell_text(v) for v in row[: MAX_COLUMNS + 1]]
                while fields and fields[-1] == "":
                    fields.pop()
                if not fields:
                    blank += 1
                    continue
                width = width or len(fields)  # the header's
                for _ in range(blank):
                    size += writer.writerow([""] * width)
                rows += blank
                blank = 0
                size += writer.writerow(fields)
                rows += 1
                if size > max_bytes:
                    raise ProtocolError("too_big", f"the sheet is above {max_bytes} bytes as CSV")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if rows == 0:
        target.unlink(missing_ok=True)
        raise invalid("the first sheet is empty: row 1 must name the columns", line=1)
    return rows


def replace_with_csv(path: Path, max_bytes: int) -> None:
    """Replace an uploaded workbook at `path` by the CSV of its first sheet."""
    workbook = path.with_suffix(".xlsx")
    path.replace(workbook)
    try:
        to_csv(workbook, path, max_bytes)
    finally:
        workbook.unlink(missing_ok=True)
