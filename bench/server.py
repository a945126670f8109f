"""The server under test: seeded data sets (cached), scratch copies, and the real
`python -m server.cli serve` subprocess with its embedded Redis child."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.procstat import children, memory_mb

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "ducksheet.duckdb"
SERVER_CLI = (sys.executable, "-m", "server.cli")
LISTEN = re.compile(r"running on http://([0-9.]+):(\d+)", re.IGNORECASE)
REDIS_PID = re.compile(r"embedded redis started: pid (\d+)")
# Never let a developer's environment point the server under test elsewhere.
SCRUBBED_ENV = ("REDIS_URL", "DUCKSHEET_REDIS_URL", "DUCKSHEET_DATA_DIR", "DUCKSHEET_PORT")


# A bench editor sends up to 500 edits/s on one socket: lift the per-connection rate
# limit (default 200/s) so that the server's speed is measured, not its limiter.
UNLIMITED = {"DUCKSHEET_EDIT_RATE": "1000000", "DUCKSHEET_EDIT_BURST": "1000000"}


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(UNLIMITED)
    env.update(extra or {})
    return env


def cached_dataset(results: Path, sales: int, seed: int = 42) -> Path:
    """A seeded database for `sales` rows, created once under results/data-N and reused."""
    name = f"data-{sales}" if seed == 42 else f"data-{sales}-seed{seed}"
    directory = results / name
    db = directory / DB_NAME
    if db.exists():
        return db
    building = results / f".{name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    command = [*SERVER_CLI, "seed", "--data-dir", str(building)]
    command += ["--sales", str(sales), "--seed", str(seed)]
    subprocess.run(
        command,
        cwd=ROOT,
        env=server_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    directory.mkdir(parents=True, exist_ok=True)
    os.replace(building / DB_NAME, db)
    shutil.rmtree(building, ignore_errors=True)
    print(f"seeded {sales:,} sales rows into {db} in {time.monotonic() - started:.1f}s")
    return db


def scratch_copy(db: Path, results: Path, label: str) -> Path:
    """A fresh data dir holding a copy of `db`, so edits never accumulate in the cache."""
    directory = results / "scratch" / f"{label}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    shutil.copy(db, directory / DB_NAME)
    return directory


def http_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def http_post_json(url: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _role_of(pid: int) -> str | None:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"--role" in args[:-1]:
        return args[args.index(b"--role") + 1].decode()
    return None


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """`python -m server.cli serve --data-dir D --port 0`, stopped with SIGTERM."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = SERVER_CLI,
    ) -> None:
        self.data_dir = data_dir
        self.command = command
        self.env = server_env(env)
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.redis_pid: int | None = None
        self.startup: dict[str, float] = {}
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None
        self._log_lines: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> dict[str, float]:
        """Launch and wait for /healthz 200; returns the startup times in seconds."""
        launched = time.monotonic()
        self.proc = subprocess.Popen(
            [*self.command, "serve", "--data-dir", str(self.data_dir), "--port", "0"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        deadline = launched + timeout
        while not self._listening.wait(0.01):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError("server did not start:\n" + "".join(self._log_lines[-30:]))
        listening = time.monotonic()
        while True:
            with contextlib.suppress(OSError):
                status, _ = http_json(f"{self.base}/healthz", timeout=2)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError("server never became healthy")
            time.sleep(0.01)
        healthy = time.monotonic()
        if self.redis_pid is None:
            kids = children(self.pid)
            self.redis_pid = kids[0] if kids else None
        self.startup = {
            "to_listening_s": round(listening - launched, 3),
            "to_healthy_s": round(healthy - launched, 3),
        }
        return self.startup

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.proc.stdout:
                log.write(line)
                self._log_lines.append(line)
                if self.port is None and (match := LISTEN.search(line)):
                    self.port = int(match.group(2))
                    self._listening.set()
                elif self.redis_pid is None and (match := REDIS_PID.search(line)):
                    self.redis_pid = int(match.group(1))

    def pids(self) -> dict[str, int]:
        """The server, its Redis, and its role processes under `serve --web-workers N`
        (named by role: data, web-1, …)."""
        pids = {"server": self.pid}
        if self.redis_pid is not None:
            pids["redis"] = self.redis_pid
        webs = 0
        for pid in children(self.pid):
            role = _role_of(pid)
            if role == "web":
                webs += 1
                role = f"web-{webs}"
            if role is not None:
                pids[role] = pid
        return pids

    def peak_rss_mb(self) -> dict[str, float]:
        """VmHWM of the server and its Redis (read before stopping)."""
        return {name: memory_mb(pid).get("VmHWM", 0.0) for name, pid in self.pids().items()}

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` (only our own child)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def view_all_rows(base: str, table: str, condition: dict[str, Any] | str) -> list[Any]:
    """Every row matching, a page of 1000 at a time."""
    rows: list[Any] = []
    while True:
        page = view_rows(base, table, condition, offset=len(rows))
        rows += page
        if len(page) < 1000:
            return rows


def view_rows(
    base: str, table: str, condition: dict[str, Any] | str, limit: int = 1000, offset: int = 0
) -> list[Any]:
    query = urllib.parse.urlencode(
        {"condition": json.dumps(condition), "limit": limit, "offset": offset}
    )
    status, body = http_json(f"{base}/view_table/{table}?{query}")
    if status != 200 or body is None:
        raise ServerError(f"/view_table/{table} answered {status}")
    return list(body["data"]["rows"])
