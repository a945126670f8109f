"""The open-loop WebSocket load generator.

Worker processes (spawned) each hold some editor and viewer sockets. Edit `i` of the
run is due at `t0 + i / rate` and belongs to editor `i % editors`; it is sent at its
due time whatever the server is doing (a slow server cannot hide its latency behind
a slow sender), and every latency is measured from that due time. Clocks are
`time.monotonic()`, which is system-wide on Linux, so workers and parent agree.

Protocol between the parent and a worker (over a Pipe):
  worker -> ("ready", info)        all sockets connected and greeted
  parent -> ("go", t0)
  worker -> ("sent", max_seq)      schedule done, own edits resolved (or timed out)
  parent -> ("drain", max_seq)     the newest seq any editor saw applied
  worker -> ("result", WorkerResult) viewers reached it (or timed out); sockets closed
  worker -> ("error", text)        anything failed
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import orjson

from bench.edits import Mix
from bench.lean import OP_TEXT, LeanSocket, client_frame

UPDATES_PREFIX = b'{"type":"updates","seq":"'
SEQ_START = len(UPDATES_PREFIX)


def seq_int(seq: str | bytes) -> int:
    """A stream id "<ms>-<n>" as one comparable integer."""
    ms, _, n = (seq.decode() if isinstance(seq, bytes) else seq).partition("-")
    return int(ms) * 1_000_000 + int(n or 0)


@dataclass(frozen=True)
class LoadPlan:
    rate: float  # edits per second, all editors together
    duration: float  # seconds of scheduled sends
    editors: int
    viewers: int
    workers: int
    mix: Mix
    compression: str | None = "deflate"  # what browsers negotiate; None disables it
    seed: int = 1
    drain_timeout: float = 15.0  # after the schedule ends, wait this long for outcomes
    connect_concurrency: int = 50


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    ws_url: str
    plan: LoadPlan
    editors: list[int]  # global editor indexes handled by this worker
    viewers: list[int]  # global viewer indexes handled by this worker
    since: str | None  # viewers and editors resume here instead of loading a snapshot


@dataclass
class EditorLog:
    name: str
    kinds: list[str] = field(default_factory=list)
    due: array[float] = field(default_factory=lambda: array("d"))
    sent: array[float] = field(default_factory=lambda: array("d"))
    queued: array[float] = field(default_factory=lambda: array("d"))
    done: array[float] = field(default_factory=lambda: array("d"))  # applied or rejected
    seq: array[int] = field(default_factory=lambda: array("q"))  # 0 until applied
    status: list[str | None] = field(default_factory=list)  # "applied" or an error code
    close_code: int | None = None
    updates_frames: int = 0


@dataclass
class ViewerLog:
    name: str
    seqs: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    frame_bytes: int = 0  # of the updates frames, as sent (compressed or not)
    close_code: int | None = None


@dataclass
class WorkerResult:
    index: int
    editors: list[EditorLog]
    viewers: list[ViewerLog]
    connect_s: float


# -- worker side ---------------------------------------------------------------------


class Participant:
    """An editor or a viewer: one lean socket and its log. `done` is set when it has
    nothing more to wait for (its edits resolved, or the target seq seen) or it closed."""

    role = ""

    def __init__(self, cfg: WorkerConfig, index: int) -> None:
        self.cfg = cfg
        self.index = index
        self.done = asyncio.Event()
        self.sock: LeanSocket | None = None
        self.log: EditorLog | ViewerLog

    async def open(self) -> None:
        deflate = self.cfg.plan.compression is not None
        name = f"bench-{self.role}-{self.index}"
        self.sock = await LeanSocket.open(
            self.cfg.ws_url, name, self.cfg.since, deflate, self._on, UPDATES_PREFIX
        )
        self.sock.closed.add_done_callback(self._closed)

    def _on(self, data: bytes, now: float, size: int) -> None:
        raise NotImplementedError

    def _closed(self, _: asyncio.Future[None]) -> None:
        assert self.sock is not None
        self.log.close_code = self.sock.close_code
        self.done.set()


class Editor(Participant):
    role = "editor"

    def __init__(self, cfg: WorkerConfig, index: int) -> None:
        super().__init__(cfg, index)
        self.log = EditorLog(f"editor-{index}")
        self.pending = 0
        self.finished_sending = False

    async def send_schedule(self, t0: float, cycle: list[str]) -> None:
        assert self.sock is not None
        plan = self.cfg.plan
        rng = random.Random(plan.seed * 1_000_003 + self.index)
        log = self.log
        end = t0 + plan.duration
        k = 0
        while not self.sock.closed.done():
            i = k * plan.editors + self.index
            due = t0 + i / plan.rate
            if due >= end:
                break
            # made before it is due: building, encoding and masking a paste's 5,000 edits
            # takes the generator 10-20 ms, which is not the server's latency
            kind = cycle[i % len(cycle)]
            body = {"id": f"{self.index}-{k}", **plan.mix.make(kind, rng)}
            frame = client_frame(OP_TEXT, orjson.dumps(body))
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            log.kinds.append(kind)
            log.due.append(due)
            log.queued.append(0.0)
            log.done.append(0.0)
            log.seq.append(0)
            log.status.append(None)
            self.pending += 1
            log.sent.append(time.monotonic())
            self.sock.send_frame(frame)
            k += 1
        self.finished_sending = True
        if self.pending == 0:
            self.done.set()

    def _on(self, data: bytes, now: float, size: int) -> None:
        log = self.log
        if data.startswith(UPDATES_PREFIX):
            log.updates_frames += 1
            return
        frame = orjson.loads(data)
        kind = frame["type"]
        if kind == "queued":
            log.queued[int(frame["id"].rpartition("-")[2])] = now
        elif kind in ("applied", "rejected"):
            k = int(frame["id"].rpartition("-")[2])
            log.done[k] = now
            if kind == "applied":
                log.status[k] = "applied"
                log.seq[k] = seq_int(frame["seq"])
            else:
                log.status[k] = frame["error"]["code"]
            self.pending -= 1
            if self.pending == 0 and self.finished_sending:
                self.done.set()


class Viewer(Participant):
    role = "viewer"

    def __init__(self, cfg: WorkerConfig, index: int) -> None:
        super().__init__(cfg, index)
        self.log = ViewerLog(f"viewer-{index}")
        self.last = 0
        self.target = 0

    def _on(self, data: bytes, now: float, size: int) -> None:
        if not data.startswith(UPDATES_PREFIX):
            return
        log = self.log
        seq = seq_int(data[SEQ_START : data.index(b'"', SEQ_START)])
        log.seqs.append(seq)
        log.times.append(now)
        log.frame_bytes += size
        self.last = seq
        if self.target and seq >= self.target:
            self.done.set()

    def wait_for(self, target: int) -> None:
        self.target = target
        if self.last >= target:
            self.done.set()


async def _recv(conn: Connection) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


async def _worker(cfg: WorkerConfig, conn: Connection) -> WorkerResult:
    plan = cfg.plan
    gate = asyncio.Semaphore(plan.connect_concurrency)
    started = time.monotonic()

    editors = [Editor(cfg, e) for e in cfg.editors]
    viewers = [Viewer(cfg, v) for v in cfg.viewers]

    async def opened(socket: Editor | Viewer) -> None:
        async with gate:
            await socket.open()

    await asyncio.gather(*(opened(e) for e in editors))
    await asyncio.gather(*(opened(v) for v in viewers))
    connect_s = time.monotonic() - started
    conn.send(("ready", {"connect_s": connect_s}))
    command, t0 = await _recv(conn)
    assert command == "go"
    cycle = plan.mix.cycle()
    await asyncio.gather(*(e.send_schedule(t0, cycle) for e in editors))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(
            max(0.0, t0 + plan.duration + plan.drain_timeout - time.monotonic())
        ):
            await asyncio.gather(*(e.done.wait() for e in editors))
    conn.send(("sent", max((max(e.log.seq, default=0) for e in editors), default=0)))
    command, target = await _recv(conn)
    assert command == "drain"
    for viewer in viewers:
        viewer.wait_for(target)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(plan.drain_timeout):
            await asyncio.gather(*(v.done.wait() for v in viewers))
    await asyncio.gather(*(x.sock.close() for x in [*editors, *viewers] if x.sock is not None))
    return WorkerResult(cfg.index, [e.log for e in editors], [v.log for v in viewers], connect_s)


def worker_entry(cfg: WorkerConfig, conn: Connection) -> None:
    """Process entry point: run the worker on uvloop when available."""
    try:
        try:
            import uvloop

            result = uvloop.run(_worker(cfg, conn))
        except ImportError:
            result = asyncio.run(_worker(cfg, conn))
        conn.send(("result", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# -- parent side ---------------------------------------------------------------------


@dataclass
class RawLoad:
    plan: LoadPlan
    t0: float
    end: float  # when the last worker reported its result
    worker_pids: dict[str, int]
    results: list[WorkerResult]


class LoadError(RuntimeError):
    pass


def _split(count: int, workers: int) -> list[list[int]]:
    return [list(range(w, count, workers)) for w in range(workers)]


def _expect(conns: list[Connection], command: str, timeout: float) -> list[Any]:
    """One message `command` from every worker, in worker order."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(conns):
        left = deadline - time.monotonic()
        ready = wait([c for i, c in enumerate(conns) if i not in got], timeout=max(0.0, left))
        if not ready:
            raise LoadError(f"workers did not report {command!r} within {timeout:.0f}s")
        for c in ready:
            assert isinstance(c, Connection)
            try:
                kind, value = c.recv()
            except EOFError as exc:
                raise LoadError("a load worker died") from exc
            if kind == "error":
                raise LoadError(f"load worker failed:\n{value}")
            if kind != command:
                raise LoadError(f"expected {command!r} from a worker, got {kind!r}")
            got[conns.index(c)] = value
    return [got[i] for i in range(len(conns))]


def run_load(
    ws_url: str,
    plan: LoadPlan,
    since: str | None,
    on_started: Callable[[dict[str, int]], None] | None = None,
    connect_timeout: float = 180.0,
) -> RawLoad:
    """Spawn the workers, run the schedule, gather every log. `on_started(pids)` is
    called once the workers exist (so their CPU can be sampled)."""
    ctx = multiprocessing.get_context("spawn")
    workers = max(1, min(plan.workers, plan.editors + plan.viewers))
    editor_sets = _split(plan.editors, workers)
    viewer_sets = _split(plan.viewers, workers)
    conns: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        for w in range(workers):
            parent, child = ctx.Pipe()
            cfg = WorkerConfig(w, ws_url, plan, editor_sets[w], viewer_sets[w], since)
            proc = ctx.Process(target=worker_entry, args=(cfg, child), name=f"bench-load-{w}")
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        pids = {f"load-{w}": p.pid for w, p in enumerate(procs) if p.pid is not None}
        if on_started is not None:
            on_started(pids)
        _expect(conns, "ready", connect_timeout)
        t0 = time.monotonic() + 0.5
        for c in conns:
            c.send(("go", t0))
        timeout = plan.duration + plan.drain_timeout + 30
        max_seqs = _expect(conns, "sent", timeout + 0.5)
        for c in conns:
            c.send(("drain", max(max_seqs)))
        results = _expect(conns, "result", plan.drain_timeout + 60)
        end = time.monotonic()
        for proc in procs:
            proc.join(10)
        return RawLoad(plan, t0, end, pids, results)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for c in conns:
            c.close()


# -- warm-up -------------------------------------------------------------------------


async def _warmup(ws_url: str, mix: Mix, count: int, limit_s: float, seed: int) -> dict[str, Any]:
    """One editor loads a snapshot (timed), sends `count` edits of the mix and waits for
    them; returns the newest applied seq, so the measured sockets can resume from it."""
    started = time.monotonic()
    seq: str | None = None
    outcomes: dict[str, int] = {}
    resolved = asyncio.Event()

    def on_text(data: bytes, now: float, size: int) -> None:
        nonlocal seq
        if data.startswith(UPDATES_PREFIX):
            return
        frame = orjson.loads(data)
        if frame["type"] not in ("applied", "rejected"):
            return
        status = frame["type"] if frame["type"] == "applied" else frame["error"]["code"]
        outcomes[status] = outcomes.get(status, 0) + 1
        if frame["type"] == "applied":
            seq = frame["seq"]
        if sum(outcomes.values()) == count:
            resolved.set()

    sock = await LeanSocket.open(ws_url, "bench-warmup", None, True, on_text)
    try:
        snapshot_rows = len(sock.greeted.result()["rows"])
        snapshot_s = time.monotonic() - started
        rng = random.Random(seed)
        cycle = mix.cycle()
        for k in range(count):
            body = {"id": f"w-{k}", **mix.make(cycle[k % len(cycle)], rng)}
            sock.send_text(orjson.dumps(body))
        if count:
            async with asyncio.timeout(limit_s):
                await resolved.wait()
    finally:
        await sock.close()
    return {
        "since": seq,
        "snapshot_s": round(snapshot_s, 3),
        "snapshot_rows": snapshot_rows,
        "warmup_s": round(time.monotonic() - started - snapshot_s, 3),
        "outcomes": outcomes,
    }


def warmup(
    ws_url: str, mix: Mix, count: int = 20, timeout: float = 120.0, seed: int = 0
) -> dict[str, Any]:
    return asyncio.run(_warmup(ws_url, mix, count, timeout, seed))
