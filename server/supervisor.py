"""`ducksheet serve --web-workers N` (N ≥ 1): the embedded Redis, one data process and N
web processes on one machine, started and stopped as one command.

The public socket is bound here and inherited by every web process (the kernel spreads
connections over them). Each child gets SIGTERM if this process dies, even by kill -9.
A child that exits on its own is restarted after a short backoff; one that keeps dying
(MAX_CRASHES within CRASH_WINDOW seconds) stops everything with exit status 1, for the
service manager to see. SIGTERM or SIGINT stops the web processes first (their sockets
close with 1001), then the data process (the writer finishes its batch, DuckDB is
checkpointed), then Redis.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from server import metrics_dir
from server.config import Settings
from server.listen import bind_public, public_url
from server.store.embedded_redis import EmbeddedRedis, EmbeddedRedisError, die_with_parent_prefix

log = logging.getLogger("ducksheet")
READY_TIMEOUT = 120.0  # seconds a child may take to start (a first start seeds the data)
STOP_TIMEOUT = {"web": 30.0, "data": 60.0}  # seconds after SIGTERM before SIGKILL
MAX_CRASHES = 5
CRASH_WINDOW = 60.0
TICK = 0.2


class StartFailed(Exception):
    pass


@dataclass
class Child:
    name: str  # "data", "web-1", …
    role: str  # "data" or "web"
    args: list[str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _python() -> list[str]:
    """This interpreter as it was started (-P keeps a checkout's cwd off sys.path)."""
    return [sys.executable, *(["-P"] if sys.flags.safe_path else []), "-m", "server.cli"]


class Supervisor:
    def __init__(self, settings: Settings, web_workers: int) -> None:
        self.settings = settings
        self.web_workers = web_workers
        self.embedded: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self.env = dict(os.environ)
        self._socket: socket.socket | None = None
        self._stop_signal: int | None = None

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            sock = self._start_all()
            log.info(
                "ducksheet running on %s (1 data process, %d web processes; CTRL+C to quit)",
                public_url(sock),
                self.web_workers,
            )
            return self._watch()
        except StartFailed as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._stop_all()

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        self._stop_signal = sig

    @property
    def stopping(self) -> bool:
        return self._stop_signal is not None

    def _start_all(self) -> socket.socket:
        if metrics_dir.multiprocess_dir() is None:  # /metrics of any web process sums them all
            metrics_dir.prepare_multiprocess_dir(self.settings.data_dir / "metrics")
            self.env[metrics_dir.MULTIPROC_ENV] = os.environ[metrics_dir.MULTIPROC_ENV]
        url = self.settings.redis_url
        if url is None:
            self.embedded = EmbeddedRedis(self.settings.data_dir, self.settings.appendfsync)
            url = self.embedded.start()
            log.info("embedded redis-server started (pid %s)", self.embedded.pid)
        self.env["DUCKSHEET_REDIS_URL"] = url
        sock = bind_public(self.settings.host, self.settings.port)
        self._socket = sock
        common = ["--data-dir", str(self.settings.data_dir), "--host", self.settings.host]
        if self.settings.tokens_file is not None:
            common += ["--tokens-file", str(self.settings.tokens_file)]
        data = Child("data", "data", ["--role", "data", *common])
        webs = [
            Child(f"web-{n}", "web", ["--role", "web", *common, "--listen-fd", str(sock.fileno())])
            for n in range(1, self.web_workers + 1)
        ]
        for web in webs:
            web.pass_fds = (sock.fileno(),)
        self.children = [data, *webs]
        self._spawn(data)  # first: web processes read from it
        self._wait_ready(webs, [self._launch(web) for web in webs])
        return sock

    def _spawn(self, child: Child) -> None:
        self._wait_ready([child], [self._launch(child)])

    def _launch(self, child: Child) -> int:
        """Start `child`; the read end of the pipe it reports readiness on."""
        ready_read, ready_write = os.pipe()
        try:
            argv = [*_python(), "serve", *child.args, "--ready-fd", str(ready_write)]
            child.process = subprocess.Popen(
                [*die_with_parent_prefix(), *argv],
                env=self.env,
                pass_fds=(*child.pass_fds, ready_write),
                process_group=0,  # a terminal's CTRL+C reaches only us; we stop them in order
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        return ready_read

    def _wait_ready(self, children: list[Child], pipes: list[int]) -> None:
        """Wait until every child reported ready (one byte on its pipe; EOF means it
        exited first); closes the pipes."""
        waiting = dict(zip(pipes, children, strict=True))
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while waiting and time.monotonic() < deadline and not self.stopping:
                readable, _, _ = select.select(list(waiting), [], [], TICK)
                for pipe in readable:
                    child = waiting.pop(pipe)
                    if not os.read(pipe, 1):
                        raise StartFailed(f"the {child.name} process exited while starting")
                    assert child.process is not None
                    log.info("%s process ready (pid %s)", child.name, child.process.pid)
        finally:
            for pipe in pipes:
                os.close(pipe)
        if waiting and not self.stopping:
            raise StartFailed("a process did not start in time; see its output above")

    def _watch(self) -> int:
        while not self.stopping:
            time.sleep(TICK)
            self._watch_redis()
            for child in self.children:
                if child.running or self.stopping:
                    continue
                if not self._restart(child):
                    return 1
        return 0

    def _restart(self, child: Child) -> bool:
        """Restart a child that exited on its own; False when it keeps dying."""
        now = time.monotonic()
        if child.restart_at == 0.0:
            assert child.process is not None
            log.warning("%s process exited (status %s)", child.name, child.process.returncode)
            metrics_dir.process_exited(child.process.pid)
            child.crashes = [t for t in child.crashes if now - t < CRASH_WINDOW] + [now]
            if len(child.crashes) >= MAX_CRASHES:
                log.error(
                    "%s process died %d times within %gs", child.name, MAX_CRASHES, CRASH_WINDOW
                )
                return False
            child.restart_at = now + min(0.5 * 2 ** (len(child.crashes) - 1), 10.0)
        if now >= child.restart_at:
            child.restart_at = 0.0
            log.info("restarting the %s process", child.name)
            try:
                self._spawn(child)
            except StartFailed as exc:
                log.error("%s", exc)  # counted as a crash on the next tick
        return True

    def _watch_redis(self) -> None:
        if self.embedded is not None and not self.embedded.running and not self.stopping:
            log.warning("embedded redis-server exited; restarting it")
            try:
                self.embedded.start()
            except EmbeddedRedisError as exc:
                log.error("could not restart the embedded redis-server: %s", exc)

    def _stop_all(self) -> None:
        for role in ("web", "data"):
            group = [c for c in self.children if c.role == role and c.running]
            for child in group:
                child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            for child in group:
                _wait_or_kill(child, STOP_TIMEOUT[role])
        if self._socket is not None:
            self._socket.close()
        if self.embedded is not None:
            self.embedded.stop()


def _wait_or_kill(child: Child, timeout: float) -> None:
    assert child.process is not None
    try:
        child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.error("%s process did not stop within %gs; killing it", child.name, timeout)
        child.process.kill()
        child.process.wait(10)
