"""The persister: writes decided effects into DuckDB behind the writer, in group
commits, and acknowledges request_duck only up to what DuckDB holds.

One transaction per flush covers many batches: the sales rows and summary cells as
of the last batch, holds, history, undo stacks, every request's outcome and
`_applied`. CHECKPOINT is run here, when idle or when the WAL grew, never in the
writer's way (DuckDB's own auto-checkpoint is moved out of reach).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any

import duckdb
import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from protocol.catalog import CELL_KEY
from server import metrics
from server.store.db import Database
from server.store.streams import GROUP, PERSISTED, REDIS_ERRORS, REQUESTS
from server.store.versions import in_version
from server.writer.cell_ids import CellIds
from server.writer.effects import Effects, Groups, LogRow, absorb
from server.writer.history import write_history, write_stacks

log = logging.getLogger("ducksheet.persister")
Conn = duckdb.DuckDBPyConnection

CHECKPOINT_WAL_BYTES = 64 << 20  # checkpoint once the WAL is this big
CHECKPOINT_IDLE = 2.0  # ... or after this many idle seconds with anything in it
LAGS_KEPT = 10_000  # recent decide-to-persist lags kept for /healthz and the bench

SALES_VALUE = {
    "quantity": "v.value::INTEGER",
    "net_price": "(v.value::DECIMAL(18, 0) * 0.01)::DECIMAL(18, 2)",
    "invoice_date": "(DATE '1970-01-01' + v.value::INTEGER)",
    "product_id": "v.value::INTEGER",
    "customer_id": "v.value::INTEGER",
}
LOG_COLUMNS = ("request_id", "seq", "status", "code", "message", "user_name")  # request_log
SAME_HOLD = " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in CELL_KEY[:4])


def write_effects(con: Conn, effects: Effects, first: bool, cell_ids: CellIds) -> None:
    """One transaction: the effects (of actual) and `_applied` = their last request."""
    write_groups(con, {effects.schema: effects}, effects.last_id, first, {effects.schema: cell_ids})


def write_groups(
    con: Conn, groups: Groups, last_id: str, first: bool, cell_ids: dict[str | None, CellIds]
) -> None:
    """One transaction: every version's effects and `_applied` = `last_id`."""
    con.execute("BEGIN TRANSACTION")
    inserted = {}
    try:
        for schema, effects in groups.items():
            with in_version(con, schema):
                inserted[schema] = _write_version(con, effects, cell_ids[schema])
        _record(con, [row for effects in groups.values() for row in effects.log], last_id, first)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for schema, effects in groups.items():
        cell_ids[schema].committed(effects.cells, inserted[schema])


def _write_version(con: Conn, effects: Effects, cell_ids: CellIds) -> list[tuple[Any, ...]]:
    """One version's rows, cells, holds, history and undo stacks; the new cells' ids."""
    for column in effects.sales_columns():
        sale_ids, values = effects.sales_values(column)
        v = {"sale_id": sale_ids, "value": values}  # noqa: F841 (scanned by name below)
        con.execute(
            f"UPDATE sales SET {column} = {SALES_VALUE[column]} "
            "FROM v WHERE sales.sale_id = v.sale_id"
        )
    inserted = cell_ids.write(con, effects.cells, effects.writers)
    for coords, level, on, by, at in effects.holds:
        con.execute(f"DELETE FROM holds WHERE {SAME_HOLD}", list(coords))
        if on:
            con.execute("INSERT INTO holds VALUES (?, ?, ?, ?, ?, ?, ?)", [*coords, level, by, at])
    write_history(con, effects.steps)
    write_stacks(con, effects.stacks)
    return inserted


def _record(con: Conn, log_rows: list[LogRow], last_id: str, first: bool) -> None:
    if log_rows:
        columns = [np.array(column, dtype=object) for column in zip(*log_rows, strict=True)]
        outcomes = dict(zip(LOG_COLUMNS, columns, strict=True))  # noqa: F841 (scanned by name)
        con.execute(f"INSERT INTO request_log SELECT {', '.join(LOG_COLUMNS)} FROM outcomes")
    if first:
        con.execute("INSERT OR REPLACE INTO _applied VALUES (TRUE, ?)", [last_id])
    else:  # an UPDATE costs a fraction of INSERT OR REPLACE on a keyed table
        con.execute("UPDATE _applied SET last_id = ?", [last_id])


def announce(r: aioredis.Redis | Pipeline, seq: str, failed: str | None = None) -> Any:
    """Tell the web processes (persisted_duck) that DuckDB holds everything up to `seq`;
    `failed`: and that it will hold nothing more (the reason), so nobody waits for it."""
    fields = {b"seq": seq.encode()} | ({b"failed": failed.encode()} if failed else {})
    return r.xadd(PERSISTED, fields, maxlen=100, approximate=True)


def checkpoint(con: Conn) -> float:
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    return time.perf_counter() - started


class Persister:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        persisted: str | None,
        cell_ids: dict[str | None, CellIds],
        every: float,
    ) -> None:
        self.db = db
        self.every = every  # seconds from one group commit's start to the next under load
        self.cell_ids = cell_ids  # each version's summary keys (reloaded after barriers)
        self.redis = redis
        self.persisted = persisted  # `_applied`: the last request DuckDB holds
        self._pending: Groups = {}
        self._pending_last: str | None = None  # the last request of what is pending
        self._decided_at: list[float] = []  # when each pending batch was decided
        self._unacknowledged: list[str] = []  # persisted, not yet XACKed (Redis was down)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.lags: deque[float] = deque(maxlen=LAGS_KEPT)  # seconds, decide -> persisted
        self.checkpoints: deque[float] = deque(maxlen=100)  # seconds each
        self.flushes = 0
        self._last_write = time.monotonic()

    def add(self, effects: Effects | Groups) -> None:
        for each in effects.values() if isinstance(effects, dict) else [effects]:
            absorb(self._pending, each)
            self._pending_last = each.last_id
        self._decided_at.append(time.monotonic())
        self._idle.clear()
        self._wake.set()

    @property
    def behind(self) -> int:
        """Requests decided but not yet persisted."""
        return sum(len(effects.ids) for effects in self._pending.values())

    async def idle(self) -> None:
        """Return once nothing decided is waiting to be persisted."""
        await self._idle.wait()

    async def drain(self) -> None:
        """Return once everything added so far is persisted."""
        while self._pending:
            await self.flush()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        await self.db.write(_move_auto_checkpoint)
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), CHECKPOINT_IDLE)
            except TimeoutError:
                await self._checkpoint_if_idle()
                continue
            self._wake.clear()
            started = time.monotonic()
            await self.flush()
            # let the next group gather: a group commit starts `every` after the one
            # before it started (at once when that one took longer)
            await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))
        await self.drain()

    async def flush(self) -> None:
        groups, decided_at, last_id = self._pending, self._decided_at, self._pending_last
        if not groups or last_id is None:
            await self._acknowledge()
            return
        self._pending, self._decided_at = {}, []
        started = time.perf_counter()
        first = self.persisted is None
        try:
            await self.db.write(write_groups, groups, last_id, first, self.cell_ids)
        except Exception:  # kept for a retry, with what was added meanwhile after it
            later, self._pending = self._pending, groups
            for effects in later.values():
                absorb(self._pending, effects)
            self._decided_at = decided_at + self._decided_at
            raise
        ids = [i for effects in groups.values() for i in effects.ids]
        metrics.persist_seconds(time.perf_counter() - started, len(ids))
        now = time.monotonic()
        self.lags.extend(now - t for t in decided_at)
        metrics.persistence_lag(now - decided_at[0], self.behind)
        self.persisted = last_id
        self.flushes += 1
        self._last_write = now
        self._unacknowledged += ids
        await self._acknowledge()
        if not self._pending:
            self._idle.set()
        if _wal_bytes(self.db) > CHECKPOINT_WAL_BYTES:
            with metrics.checkpoint_timer():
                self.checkpoints.append(await self.db.write(checkpoint))

    async def resume(self) -> None:
        """XACK the journal entries DuckDB already holds and say how far it is: the
        process before may have persisted them while Redis was away, and the web
        processes wait on this before `?wait` and `min_seq` answer."""
        if self.persisted is None:
            return
        while pending := await self.redis.xpending_range(
            REQUESTS, GROUP, min="-", max=self.persisted, count=1000
        ):
            await self.redis.xack(REQUESTS, GROUP, *[p["message_id"] for p in pending])
        await announce(self.redis, self.persisted)

    async def covered(self, seq: str) -> None:
        """DuckDB holds `seq` through a transaction of its own (a barrier request)."""
        self.persisted = seq
        await announce(self.redis, seq)

    async def _acknowledge(self) -> None:
        """XACK and trim what DuckDB holds, and tell the web processes how far it is."""
        if not self._unacknowledged or self.persisted is None:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(REQUESTS, GROUP, *self._unacknowledged)
            pipe.xtrim(REQUESTS, minid=self.persisted, approximate=True)
            announce(pipe, self.persisted)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("could not acknowledge persisted requests yet: %s", exc)
            return
        self._unacknowledged = []

    async def _checkpoint_if_idle(self) -> None:
        if not self._pending and _wal_bytes(self.db) > 0:
            try:
                with metrics.checkpoint_timer():
                    self.checkpoints.append(await self.db.write(checkpoint))
            except duckdb.Error as exc:  # e.g. a long read holds a snapshot: later
                log.info("checkpoint postponed: %s", exc)

    def lag_percentiles(self) -> dict[str, float | None]:
        if not self.lags:
            return {"p50_ms": None, "p99_ms": None}
        ordered = sorted(self.lags)
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)  # noqa: E731
        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def _move_auto_checkpoint(con: Conn) -> None:
    con.execute("SET wal_autocheckpoint = '1TB'")


def _wal_bytes(db: Database) -> int:
    try:
        return os.path.getsize(f"{db.path}.wal")
    except OSError:
        return 0
