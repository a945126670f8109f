"""DuckDB writes run on one thread of their own, at a lower priority than the writer's
event loop, so a group commit gives way to the edits in flight."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from server.store.db import Database

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")


def niceness(_con: object) -> tuple[int, int]:
    thread = threading.get_native_id()
    return thread, os.getpriority(os.PRIO_PROCESS, thread)


async def test_writes_run_on_one_thread_niced_by_the_setting(tmp_path: Path) -> None:
    db = Database(tmp_path / "ducksheet.duckdb", write_niceness=7)
    db.open(seed_sales=100)
    try:
        first, second = await db.write(niceness), await db.write(niceness)
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert first == second  # the same thread each time
        assert first[1] == min(19, ours + 7)
        assert await db.write(lambda con: con.execute("SELECT 42").fetchone()) == (42,)
    finally:
        db.close()


async def test_a_niceness_of_zero_leaves_the_write_thread_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "ducksheet.duckdb", write_niceness=0)
    db.open(seed_sales=100)
    try:
        _, nice = await db.write(niceness)
        assert nice == os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    finally:
        db.close()
