"""The DuckDB database: one read-write connection owned by the writer, read cursors
in a small thread pool. Blocking DuckDB calls never run on the event loop.

Writes (the persister's group commits, barrier requests) run on one thread of their own
at a lower priority: a group commit's tens of milliseconds of CPU then wait while the
writer, the web process and Redis have work, instead of delaying the edits in flight on
two cores. DuckDB's own worker threads keep their priority.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from seed.schema import create_schema
from server.config import Settings

log = logging.getLogger("ducksheet.db")
T = TypeVar("T")
Conn = duckdb.DuckDBPyConnection


class Database:
    def __init__(
        self,
        path: Path,
        read_threads: int = Settings.read_threads,
        duckdb_threads: int = Settings.duckdb_threads,
        write_niceness: int = Settings.write_niceness,
        memory_mb: int = Settings.duckdb_memory_mb,
    ) -> None:
        self.path = path
        self.duckdb_threads = duckdb_threads
        self.memory_mb = memory_mb
        self._con: Conn | None = None
        self._lock = asyncio.Lock()
        self._local = threading.local()
        self._cursors: list[Conn] = []
        self._cursors_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="duck-read")
        self._writes = ThreadPoolExecutor(
            1, "duck-write", initializer=lower_priority, initargs=(write_niceness,)
        )
        self.failure: str | None = None  # set when the database can no longer be written

    def open(self, seed_sales: int = Settings.seed_sales, seed: int = Settings.seed) -> None:
        """Open (creating and seeding an empty database) and make sure the schema exists."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self.duckdb_threads > 0:
            config["threads"] = self.duckdb_threads
        if self.memory_mb > 0:
            config["memory_limit"] = f"{self.memory_mb}MB"
        con = duckdb.connect(str(self.path), config=config)
        if not has_data(con):
            from seed.generate import seed_database  # Faker: in memory only on a first start

            log.info("seeding %s with %s sales rows", self.path, f"{seed_sales:,}")
            seed_database(con, sales=seed_sales, seed=seed, progress=log.info)
        create_schema(con)
        self._con = con

    @property
    def con(self) -> Conn:
        if self._con is None:
            raise RuntimeError("database is not open")
        return self._con

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(connection, *args) on the write thread while holding the writer lock."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writes, fn, self.con, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(cursor, *args) on a reader thread; sees the last committed snapshot."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn, args)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self.con.cursor()
            self._local.cursor = cursor
            with self._cursors_lock:
                self._cursors.append(cursor)
        return fn(cursor, *args)

    def close(self) -> None:
        self._readers.shutdown(wait=True)
        self._writes.shutdown(wait=True)
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        if self._con is not None:
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint on close failed: %s", exc)
            self._con.close()
            self._con = None


def has_data(con: Conn) -> bool:
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "sales" not in tables:
        return False
    return con.execute("SELECT count(*) FROM product").fetchone()[0] > 0  # type: ignore[index]


def lower_priority(niceness: int) -> None:
    """Add `niceness` to the calling thread's (Linux: each thread has its own; elsewhere
    the call would name a process, so it is left alone)."""
    if niceness <= 0 or sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        lowered = min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness)
        os.setpriority(os.PRIO_PROCESS, thread, lowered)
    except OSError as exc:
        log.warning("could not lower the DuckDB write thread's priority: %s", exc)
