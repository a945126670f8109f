"""What an export may ask for, and where its file is written: the part of exporting
that web processes need as well, without DuckDB or the xlsx writer (they check a
request before forwarding it, and stream the file the data process wrote)."""

from __future__ import annotations

import uuid
from pathlib import Path

from protocol.catalog import EXPORT_FORMATS, TABLES
from protocol.errors import ProtocolError

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": XLSX_TYPE,
}
MEASURES = {"net_amount": "Net amount", "quantity": "Quantity"}  # the grid workbook's


def check_request(table: str, fmt: str) -> None:
    """Raise the client error for an unknown table or format."""
    if table not in TABLES:
        raise ProtocolError(
            "unknown_table", f"unknown table {table[:80]!r}; tables: {', '.join(TABLES)}"
        )
    if fmt not in EXPORT_FORMATS:
        formats = ", ".join(EXPORT_FORMATS)
        raise ProtocolError("invalid_value", f"format must be one of {formats}", parameter="format")


def temp_export_path(data_dir: Path, table: str, fmt: str) -> Path:
    """A fresh file name under <data_dir>/exports/ (the directory is created)."""
    directory = data_dir / "exports"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{table}-{uuid.uuid4().hex}.{fmt}"
