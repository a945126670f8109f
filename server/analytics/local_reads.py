"""Reads on this process's DuckDB reader cursors: `Reads` (server/edge/reads.py) for the
data role, or for every role in one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from protocol.history import HistoryQuery
from protocol.versions import ACTUAL
from server.analytics import validation_log, xlsx_import
from server.analytics.compare import compare, in_named_version, versions
from server.analytics.exporter import export_table
from server.analytics.history import history
from server.analytics.reads import request_status, snapshot, view_table
from server.analytics.reports import Report, run_report
from server.analytics.xlsx_export import write_grid
from server.edge.reads import Node, Order
from server.edge.uploads import save_upload, upload_path
from server.store.db import Database
from server.writer.holds import current_holds

WriterStatus = Callable[[], dict[str, Any]]


class LocalReads:
    """Reads on this process's DuckDB reader cursors."""

    def __init__(self, db: Database, data_dir: Path, writer_status: WriterStatus) -> None:
        self.db = db
        self.data_dir = data_dir
        self.writer_status = writer_status  # {writer, last_applied, applied_requests}

    async def snapshot(self, version: str = ACTUAL) -> dict[str, Any]:
        return await self.db.read(snapshot, version)

    async def view_table(
        self,
        table: str,
        condition: dict[str, Any],
        order: Order,
        limit: int,
        offset: int,
        version: str = ACTUAL,
    ) -> dict[str, Any]:
        return await self.db.read(view_table, table, condition, order, limit, offset, version)

    async def versions(self) -> list[dict[str, Any]]:
        return await self.db.read(versions)

    async def compare(
        self, a: str, b: str, measure: str, condition: dict[str, Any], limit: int, offset: int
    ) -> dict[str, Any]:
        return await self.db.read(compare, a, b, measure, condition, limit, offset)

    async def holds(self, version: str = ACTUAL) -> list[dict[str, Any]]:
        return await self.db.read(in_named_version, version, current_holds)

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        return await self.db.read(request_status, request_id)

    async def history(self, query: HistoryQuery, version: str = ACTUAL) -> dict[str, Any]:
        return await self.db.read(in_named_version, version, history, query)

    async def report(
        self, report: Report, params: dict[str, Any], version: str = ACTUAL
    ) -> dict[str, Any]:
        return await self.db.read(in_named_version, version, run_report, report, params)

    async def export(self, table: str, fmt: str, path: Path, version: str = ACTUAL) -> None:
        await self.db.read(in_named_version, version, export_table, table, fmt, path)

    async def health(self) -> dict[str, Any]:
        return {"database": self.db.failure or "ok", **self.writer_status()}

    async def grid_workbook(
        self, measure: str, expanded: list[Node], path: Path, version: str = ACTUAL
    ) -> None:
        await self.db.read(in_named_version, version, write_grid, measure, expanded, path)

    async def import_problems(self, import_id: str, limit: int, offset: int) -> dict[str, Any]:
        return await self.db.read(validation_log.problems, import_id, limit, offset)

    async def store_upload(
        self, chunks: AsyncIterator[bytes], import_id: str, max_bytes: int
    ) -> str:
        """Save an import body here; a workbook is rewritten as the CSV of its first sheet
        (where the writer reads it)."""
        path = await save_upload(chunks, self.data_dir, import_id, max_bytes)
        if await asyncio.to_thread(xlsx_import.is_xlsx, path):
            await asyncio.to_thread(xlsx_import.replace_with_csv, path, max_bytes)
        return str(path)

    async def discard_upload(self, import_id: str) -> None:
        upload_path(self.data_dir, import_id).unlink(missing_ok=True)
