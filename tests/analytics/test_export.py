"""Export round trips: every table as CSV and Parquet, over HTTP and from the command
line, read back by DuckDB and compared with the table."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import db_read

from protocol.catalog import TABLES
from server.analytics.exporter import run_command
from server.cli import build_parser
from server.config import Settings


def read_back(path: Path, fmt: str, types: dict[str, str]) -> list[tuple[Any, ...]]:
    """The exported file as rows, read by DuckDB (CSV with the table's column types)."""
    with duckdb.connect() as con:
        if fmt == "parquet":
            relation = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        else:
            columns = ", ".join(f"'{name}': '{kind}'" for name, kind in types.items())
            relation = con.execute(
                f"SELECT * FROM read_csv(?, header = true, auto_detect = false, "
                f"columns = {{{columns}}})",
                [str(path)],
            )
        return relation.fetchall()


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[tuple], dict[str, str]]:
    spec = TABLES[table]
    columns = ", ".join(spec.columns)
    rows = con.execute(f"SELECT {columns} FROM {table} ORDER BY {', '.join(spec.key)}").fetchall()
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "AND database_name = current_database() ORDER BY column_index",
            [table],
        ).fetchall()
    )
    return rows, {c: types[c] for c in spec.columns}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("table", list(TABLES))
async def test_http_export_round_trip(server, tmp_path: Path, table: str, fmt: str):
    expected, types = await db_read(server, table_rows, table)
    async with server.client() as http:
        response = await http.get(f"/export/{table}", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert f'filename="{table}.{fmt}"' in response.headers["content-disposition"]
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(response.content)
    assert read_back(path, fmt, types) == expected
    assert len(expected) > 0
    await no_files_left(server.services.settings.data_dir / "exports")


async def no_files_left(directory: Path) -> None:
    """The temporary export file is deleted once sent (by a task after the response)."""
    for _ in range(100):
        left = await asyncio.to_thread(lambda: list(directory.iterdir()))
        if not left:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"left in {directory}: {left}")


async def test_http_export_default_format_is_csv_and_errors(server):
    async with server.client() as http:
        csv_response = await http.get("/export/product")
        unknown = await http.get("/export/nope")
        bad_format = await http.get("/export/sales", params={"format": "xls"})
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert csv_response.text.splitlines()[0] == ",".join(TABLES["product"].columns)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_table"
    assert bad_format.status_code == 422
    assert bad_format.json()["error"]["code"] == "invalid_value"


async def test_http_export_does_not_wait_for_the_writer(server):
    async with server.services.db._lock, server.client() as http:
        response = await http.get("/export/customer", params={"format": "parquet"})
    assert response.status_code == 200


def cli_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["export", *argv])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_export_round_trip(data_dir: Path, tmp_path: Path, fmt: str, capsys):
    output = tmp_path / f"sales.{fmt}"
    args = cli_args("--table", "sales", "--format", fmt, "--output", str(output))
    assert run_command(Settings(data_dir=data_dir), args) == 0
    assert "exported 3,000 rows of sales" in capsys.readouterr().out
    with duckdb.connect(str(data_dir / "ducksheet.duckdb"), read_only=True) as con:
        expected, types = table_rows(con, "sales")
    assert read_back(output, fmt, types) == expected


async def run_cli(data_dir: Path, command: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`ducksheet <command> --data-dir D ...` in another process, as a user runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli", command, "--data-dir", str(data_dir), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_export_says_the_file_is_locked_while_the_server_runs(server, tmp_path):
    """Another process cannot open the file of a running server: the error says so."""
    output = tmp_path / "x.csv"
    data_dir = server.services.settings.data_dir
    result = await run_cli(data_dir, "export", "--table", "sales", "--output", str(output))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use" in result.stderr and "GET /export/sales" in result.stderr
    assert not output.exists()
