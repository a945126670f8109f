"""What the edge asks of the data process: reads on DuckDB cursors, the writer's health,
and a place for import bodies.

`LocalReads` (server/analytics/local_reads.py) runs them in this process (the data
role, or every role in one process); `RemoteReads` (server/edge/remote_reads.py)
forwards them to the data process. The edge holds one `Reads` and never knows which;
a web process never imports the first, nor DuckDB with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from protocol.history import HistoryQuery
from protocol.versions import ACTUAL
from server.analytics.reports import Report

Order = list[tuple[str, bool]]  # (column, descending)
Node = tuple[str | None, str | None, str | None]  # supplier, brand, family


class Reads(Protocol):
    async def snapshot(self, version: str = ACTUAL) -> dict[str, Any]:
        """{seq, rows, holds}: every summary row of a version and the seq they reflect."""
        ...

    async def view_table(
        self,
        table: str,
        condition: dict[str, Any],
        order: Order,
        limit: int,
        offset: int,
        version: str = ACTUAL,
    ) -> dict[str, Any]:
        """{table, version, columns, rows, total, seq}; `condition` as parse_condition
        returns it."""
        ...

    async def versions(self) -> list[dict[str, Any]]: ...

    async def compare(
        self, a: str, b: str, measure: str, condition: dict[str, Any], limit: int, offset: int
    ) -> dict[str, Any]:
        """{a, b, measure, columns, rows, total, seq}: each cell's a, b, diff, ratio."""
        ...

    async def holds(self, version: str = ACTUAL) -> list[dict[str, Any]]: ...

    async def history(self, query: HistoryQuery, version: str = ACTUAL) -> dict[str, Any]:
        """{events}: what changed a cell, a row or what a user did, newest first."""
        ...

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        """The request's logged outcome, or None while no outcome is logged."""
        ...

    async def report(
        self, report: Report, params: dict[str, Any], version: str = ACTUAL
    ) -> dict[str, Any]:
        """{report, parameters, columns, rows}; `params` as parse_params returns them."""
        ...

    async def export(self, table: str, fmt: str, path: Path, version: str = ACTUAL) -> None:
        """Write the whole table to `path`, a file of this process."""
        ...

    async def grid_workbook(
        self, measure: str, expanded: list[Node], path: Path, version: str = ACTUAL
    ) -> None:
        """The grid's view (measure, expanded nodes) as an xlsx workbook at `path`."""
        ...

    async def import_problems(self, import_id: str, limit: int, offset: int) -> dict[str, Any]:
        """The problems an import's validation logged, in row order, paged."""
        ...

    async def health(self) -> dict[str, Any]:
        """{database, writer} ("ok" or what is wrong), last_applied, applied_requests."""
        ...

    async def store_upload(
        self, chunks: AsyncIterator[bytes], import_id: str, max_bytes: int
    ) -> str:
        """Save an import body where the writer reads it; its path there (too_big above
        `max_bytes`)."""
        ...

    async def discard_upload(self, import_id: str) -> None:
        """Delete a saved import body that was never queued."""
        ...
