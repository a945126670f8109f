"""`ducksheet import`: load a CSV file with the server stopped."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

from protocol.actions import ImportSpec, new_import_id
from protocol.errors import ProtocolError
from server.analytics.csv_import import import_file
from server.analytics.exporter import locked_message
from server.analytics.xlsx_import import is_xlsx, to_csv
from server.config import Settings
from server.edge.uploads import MAX_UPLOAD_BYTES
from server.progress import Progress

IMPORT_STEPS = 4  # read, checked, loaded, summary rebuilt (csv_import's progress calls)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.database_path
    if not path.exists():
        print(f"no database at {path}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"no file {args.file}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as scratch:
        try:
            source = _as_csv(args.file, Path(scratch))
        except ProtocolError as exc:
            print(f"import rejected: {exc.message}", file=sys.stderr)
            return 1
        return _import(path, source, args)


def _as_csv(file: Path, scratch: Path) -> Path:
    """The CSV to import: the file itself, or an xlsx workbook's first sheet as CSV."""
    if not is_xlsx(file):
        return file
    target = scratch / f"{file.stem}.csv"
    rows = to_csv(file, target, MAX_UPLOAD_BYTES)
    print(f"read {rows:,} sheet rows from {file.name}", flush=True)  # before the bar starts
    return target


def _import(path: Path, source: Path, args: argparse.Namespace) -> int:
    spec = ImportSpec(
        table=args.table,
        path=str(source.resolve()),
        mode="validate" if args.validate else "fast",
        file_name=args.file.name,
        import_id=new_import_id(),
        upsert=args.upsert,
    )
    try:
        bar = Progress(IMPORT_STEPS)
        stats = import_file(path, spec, progress=bar.step)
    except duckdb.IOException as exc:
        print(locked_message(path, exc, f"POST /import/{args.table}"), file=sys.stderr)
        return 1
    except ProtocolError as exc:
        print(f"import rejected: {exc.message}", file=sys.stderr)
        return 1
    bar.finish(
        f"import {stats['import_id']}: {stats['inserted']:,} inserted, "
        f"{stats['updated']:,} updated, {stats['rejected']:,} rejected"
        + (" (see validation_logs)" if stats["rejected"] else "")
    )
    return 0
