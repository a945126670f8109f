"""Every Prometheus metric of the server, and its exposition (`GET /metrics`).

Call sites use the small functions below, named for what they measure, so the metric
names, labels and buckets live in this one module.

Multi-process: when `PROMETHEUS_MULTIPROC_DIR` names a directory (set before this
module is imported, as prometheus_client requires), every process of a deployment
writes its samples there and any of them serves the sum: counters and histograms add
up, per-process gauges carry a `pid` label, and stream gauges report the most recent
reading. The supervisor empties it before the processes start and drops a dead
process's live gauges (server/metrics_dir.py). Without it, the process serves
its own registry, with the standard process and platform collectors.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from server.metrics_dir import multiprocess_dir

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Buckets in seconds. Decide is in-memory work (microseconds to milliseconds); persist
# and checkpoint are DuckDB transactions (milliseconds to seconds).
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SLOW = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

# -- edge ------------------------------------------------------------------------------
_queued = Counter(
    "ducksheet_requests_queued", "Requests accepted into request_duck, by kind", ["kind"]
)
_edge_rejected = Counter(
    "ducksheet_edge_rejections",
    "Requests refused at the edge before the journal, by error code",
    ["code"],
)
_http = Histogram(
    "ducksheet_http_request_duration_seconds",
    "REST request durations, by route template, method and status",
    ["route", "method", "status"],
    buckets=SLOW,
)
_sockets = Gauge(
    "ducksheet_websockets",
    "WebSocket connections accepted and still open, in this process",
    multiprocess_mode="liveall",
)
_sessions = Gauge(
    "ducksheet_sessions",
    "WebSocket sessions past hello, in this process",
    multiprocess_mode="liveall",
)
_overflows = Counter(
    "ducksheet_send_queue_overflows",
    "Sockets closed with 1013 because their send queue overflowed",
)
_reconnects = Counter(
    "ducksheet_redis_reconnects", "Redis connection failures retried, by component", ["component"]
)
_edit_latency = Histogram(
    "ducksheet_edit_latency_seconds",
    "From a request's XADD to its outcome reaching the submitting process",
    buckets=SLOW,
)

# -- writer (data process) -------------------------------------------------------------
_outcomes = Counter(
    "ducksheet_requests_decided",
    "Requests decided by the writer, by status and error code",
    ["status", "code"],
)
_decide = Histogram("ducksheet_decide_seconds", "Time to decide one batch in memory", buckets=FAST)
_rows_after = Histogram(
    "ducksheet_rows_after_publish_seconds",
    "Time to give a published block's sales rows their shares (before persisting it)",
    buckets=FAST,
)
_persist = Histogram(
    "ducksheet_persist_seconds", "Time of one DuckDB write transaction (group commit)", buckets=SLOW
)
_batch = Histogram(
    "ducksheet_batch_requests", "Requests per batch read from request_duck", buckets=BATCH
)
_persist_batch = Histogram(
    "ducksheet_persist_batch_requests", "Requests covered by one group commit", buckets=BATCH
)
_lag_seconds = Gauge(
    "ducksheet_persistence_lag_seconds",
    "Age of the oldest decided request not yet persisted (0 when caught up)",
    multiprocess_mode="mostrecent",
)
_lag_requests = Gauge(
    "ducksheet_persistence_lag_requests",
    "Decided requests not yet persisted",
    multiprocess_mode="mostrecent",
)
_checkpoint = Histogram(
    "ducksheet_checkpoint_seconds", "Duration of DuckDB CHECKPOINTs", buckets=SLOW
)

# -- streams (read from Redis at scrape time) -------------------------------------------
_stream_length = Gauge(
    "ducksheet_stream_length", "Entries in a stream", ["stream"], multiprocess_mode="mostrecent"
)
_pending = Gauge(
    "ducksheet_request_duck_pending",
    "request_duck entries delivered to the writers and not yet acknowledged",
    multiprocess_mode="mostrecent",
)

# -- process ---------------------------------------------------------------------------
_rss = Gauge(
    "ducksheet_process_rss_bytes",
    "Resident memory of this process",
    multiprocess_mode="liveall",
)


def request_queued(kind: str) -> None:
    _queued.labels(kind).inc()


def edge_rejected(code: str) -> None:
    _edge_rejected.labels(code).inc()


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    _http.labels(route, method, str(status)).observe(seconds)


def socket_opened() -> None:
    _sockets.inc()


def socket_closed() -> None:
    _sockets.dec()


def session_started() -> None:
    _sessions.inc()


def session_ended() -> None:
    _sessions.dec()


def send_queue_overflow() -> None:
    _overflows.inc()


def redis_reconnect(component: str) -> None:
    _reconnects.labels(component).inc()


def edit_round_trip(request_id: str, now: float | None = None) -> None:
    """The time since XADD, read from the request id's millisecond part."""
    millis, _, _ = request_id.partition("-")
    if millis.isdigit():
        elapsed = (now if now is not None else time.time()) - int(millis) / 1000
        _edit_latency.observe(max(elapsed, 0.0))


def requests_decided(results: Iterable[Mapping[str, Any]]) -> None:
    """Count a batch's outcomes: applied, or rejected with the error's code."""
    for result in results:
        status = str(result.get("status", "unknown"))
        error = result.get("error")
        code = str(error.get("code", "")) if isinstance(error, Mapping) else ""
        _outcomes.labels(status, code).inc()


def decide_seconds(seconds: float) -> None:
    _decide.observe(seconds)


def rows_after_publish_seconds(seconds: float) -> None:
    _rows_after.observe(seconds)


def persist_seconds(seconds: float, requests: int) -> None:
    _persist.observe(seconds)
    _persist_batch.observe(requests)


def batch_read(requests: int) -> None:
    _batch.observe(requests)


def persistence_lag(seconds: float, requests: int) -> None:
    _lag_seconds.set(seconds)
    _lag_requests.set(requests)


@contextlib.contextmanager
def checkpoint_timer() -> Iterator[None]:
    with _checkpoint.time():
        yield


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a list that holds the elapsed seconds once the block ends."""
    elapsed: list[float] = []
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - started)


def resident_bytes() -> int:
    """Current RSS from /proc where there is one, else the peak from getrusage."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sample_process() -> None:
    _rss.set(resident_bytes())


async def sample_streams(redis: aioredis.Redis) -> None:
    """Read the stream lengths and the writers' pending count from Redis."""
    from server.store.streams import DEAD_LETTERS, GROUP, REQUESTS, RESPONSES

    async with redis.pipeline(transaction=False) as pipe:
        for stream in (REQUESTS, RESPONSES, DEAD_LETTERS):
            pipe.xlen(stream)
        pipe.xpending(REQUESTS, GROUP)
        *lengths, pending = await pipe.execute(raise_on_error=False)
    for stream, length in zip((REQUESTS, RESPONSES, DEAD_LETTERS), lengths, strict=True):
        if isinstance(length, int):
            _stream_length.labels(stream).set(length)
    if isinstance(pending, dict):
        _pending.set(int(pending.get("pending") or 0))


# -- exposition ------------------------------------------------------------------------


def exposition() -> bytes:
    """The text format of every metric: this process's, or all processes' when
    multi-process mode is on."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)
