"""`ducksheet import`: load a CSV file with the server stopped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from protocol.actions import IMPORT_TABLES, ImportSpec, new_import_id
from protocol.errors import ProtocolError
from server.analytics.csv_import import import_file
from server.analytics.exporter import locked_message
from server.config import Settings


def add_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`ducksheet import FILE --table T [--validate] [--upsert]`."""
    parser = commands.add_parser("import", help="load a CSV file (with the server stopped)")
    parser.add_argument("file", type=Path, help="CSV file with a header line")
    parser.add_argument("--table", required=True, choices=IMPORT_TABLES)
    parser.add_argument(
        "--validate",
        action="store_true",
        help="load the good rows and log the bad ones in validation_logs (default: all or nothing)",
    )
    parser.add_argument(
        "--upsert", action="store_true", help="update rows whose key exists (default: reject)"
    )
    return parser


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.database_path
    if not path.exists():
        print(f"no database at {path}", file=sys.stderr)
        return 2
    spec = ImportSpec(
        table=args.table,
        path=str(args.file.resolve()),
        mode="validate" if args.validate else "fast",
        file_name=args.file.name,
        import_id=new_import_id(),
        upsert=args.upsert,
    )
    try:
        stats = import_file(path, spec, progress=lambda m: print(m, flush=True))
    except duckdb.IOException as exc:
        print(locked_message(path, exc, f"POST /import/{args.table}"), file=sys.stderr)
        return 1
    except ProtocolError as exc:
        print(f"import rejected: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"import {stats['import_id']}: {stats['inserted']:,} inserted, "
        f"{stats['updated']:,} updated, {stats['rejected']:,} rejected"
        + (" (see validation_logs)" if stats["rejected"] else "")
    )
    return 0
