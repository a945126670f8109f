"""A web process's view of the data process's health, refreshed in the background so
that edits are refused at once (503) while nothing could apply them, without a round
trip to the data process on every edit."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from protocol.errors import ProtocolError
from server.edge.reads import Reads

INTERVAL = 1.0  # seconds between health checks of the data process


class DataWatch:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self.status: dict[str, Any] = {"database": "not reached yet", "writer": "unknown"}

    async def refresh(self) -> None:
        self.status = await self.reads.health()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL)

    def check_writable(self) -> None:
        if self.status.get("database") != "ok":
            raise ProtocolError("unavailable", "the database is unavailable; edits are refused")
        if self.status.get("writer") not in ("ok", "loading"):  # loading: queued edits wait
            raise ProtocolError("unavailable", "the writer is not running; edits are refused")
