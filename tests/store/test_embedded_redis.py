"""Tests for server.store.embedded_redis against real redis-server processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from server.store.embedded_redis import (
    AOF_NAME,
    MAX_UNIX_SOCKET_PATH,
    PID_NAME,
    SOCK_NAME,
    AuthenticationFailed,
    EmbeddedRedis,
    EmbeddedRedisError,
    ProbeConnection,
)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

MakeRedis = Callable[..., EmbeddedRedis]


@pytest.fixture
def make_redis() -> Iterator[MakeRedis]:
    """Create EmbeddedRedis instances that are always stopped at teardown."""
    created: list[EmbeddedRedis] = []

    def make(data_dir: Path, appendfsync: str = "everysec") -> EmbeddedRedis:
        instance = EmbeddedRedis(data_dir, appendfsync=appendfsync)
        created.append(instance)
        return instance

    yield make
    for instance in reversed(created):
        instance.stop(timeout=STOP_TIMEOUT)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


async def test_start_commands_and_stop(tmp_path: Path, make_redis: MakeRedis) -> None:
    embedded = make_redis(tmp_path)
    url = embedded.start(timeout=START_TIMEOUT)
    pid = embedded.pid
    assert pid is not None
    assert url == embedded.url
    assert url.startswith("unix://")
    assert (tmp_path / SOCK_NAME).exists()
    assert (tmp_path / PID_NAME).read_text().strip() == str(pid)

    client = redis.asyncio.from_url(url, socket_timeout=5)
    try:
        assert await client.ping()
        assert await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
        entry_id = await client.xadd("ops", {"cell": "A1", "value": "42"})
        entries = await client.xrange("ops")
        assert entries == [(entry_id, {b"cell": b"A1", b"value": b"42"})]
    finally:
        await client.aclose()

    embedded.stop(timeout=STOP_TIMEOUT)
    assert embedded.pid is None
    assert _wait_until(lambda: _pid_gone(pid), STOP_TIMEOUT)
    assert not (tmp_path / SOCK_NAME).exists()
    assert not (tmp_path / PID_NAME).exists()
    embedded.stop(timeout=STOP_TIMEOUT)  # idempotent
    with pytest.raises(EmbeddedRedisError):
        _ = embedded.url


def test_aof_persists_across_restart(tmp_path: Path, make_redis: MakeRedis) -> None:
    with make_redis(tmp_path) as first, redis.Redis.from_url(first.url, socket_timeout=5) as c:
        c.set("persisted", "yes")
        c.xadd("ops", {"n": "1"})
    assert (tmp_path / AOF_NAME).stat().st_size > 0

    with make_redis(tmp_path) as second, redis.Redis.from_url(second.url, socket_timeout=5) as c:
        assert c.get("persisted") == b"yes"
        assert c.xlen("ops") == 1


def test_stale_pidfile_and_socket_are_cleared(tmp_path: Path, make_redis: MakeRedis) -> None:
    (tmp_path / PID_NAME).write_text(f"{_dead_pid()}\n")
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(tmp_path / SOCK_NAME))
    leftover.close()  # leaves the socket file behind, like a crashed server
    assert (tmp_path / SOCK_NAME).exists()

    embedded = make_redis(tmp_path)
    embedded.start(timeout=START_TIMEOUT)
    with redis.Redis.from_url(embedded.url, socket_timeout=5) as client:
        assert client.ping()
    assert (tmp_path / PID_NAME).read_text().strip() == str(embedded.pid)


def test_orphan_from_earlier_run_is_terminated(tmp_path: Path, make_redis: MakeRedis) -> None:
    forgotten = make_redis(tmp_path)
    forgotten.start(timeout=START_TIMEOUT)
    orphan_pid = forgotten.pid
    assert orphan_pid is not None

    second = make_redis(tmp_path)
    second.start(timeout=START_TIMEOUT)
    assert second.pid != orphan_pid
    assert _pid_gone(orphan_pid)
    assert _wait_until(lambda: forgotten.pid is None, STOP_TIMEOUT)
    with redis.Redis.from_url(second.url, socket_timeout=5) as client:
        assert client.set("k", "v")
        assert client.get("k") == b"v"
    assert (tmp_path / PID_NAME).read_text().strip() == str(second.pid)


OWNER_WITH_BUSY_THREADS = """
import sys, threading
from pathlib import Path
import duckdb
from server.store.embedded_redis import EmbeddedRedis

connection = duckdb.connect()
def busy() -> None:
    cursor = connection.cursor()
    while True:
        cursor.execute("SELECT sum(range) FROM range(1000000)").fetchall()
for _ in range(3):
    threading.Thread(target=busy, daemon=True).start()
for _ in range(5):  # every start forks beside running DuckDB threads
    redis = EmbeddedRedis(Path(sys.argv[1]))
    redis.start()
    redis.stop()
redis.start()
print(redis.pid, flush=True)
threading.Event().wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_redis_started_beside_duckdb_threads_dies_with_its_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_WITH_BUSY_THREADS, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line.strip().isdigit(), f"owner failed to start redis: {line!r}"
        redis_pid = int(line)
        assert not _pid_gone(redis_pid)
    finally:
        owner.kill()
        owner.wait(timeout=STOP_TIMEOUT)
    assert _wait_until(lambda: _pid_gone(redis_pid), STOP_TIMEOUT)


async def test_long_data_dir_falls_back_to_tcp_with_password(
    tmp_path: Path, make_redis: MakeRedis
) -> None:
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(data_dir / SOCK_NAME)) > MAX_UNIX_SOCKET_PATH
    embedded = make_redis(data_dir)
    url = embedded.start(timeout=START_TIMEOUT)
    assert url.startswith("redis://:")
    assert "@127.0.0.1:" in url
    assert not (data_dir / SOCK_NAME).exists()

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with (
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as anonymous,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        anonymous.ping()

    client = redis.asyncio.from_url(url, socket_timeout=5)
    try:
        assert await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()
    assert (data_dir / "redis.conf").stat().st_mode & 0o077 == 0


async def test_a_tcp_server_that_died_comes_back_on_the_same_address(
    tmp_path: Path, make_redis: MakeRedis
) -> None:
    # clients (the server's writer, hub and edges) keep the URL they were given
    embedded = make_redis(tmp_path / ("d" * 60) / ("e" * 60))
    url = embedded.start(timeout=START_TIMEOUT)
    client = redis.asyncio.from_url(url, socket_timeout=5)
    try:
        assert await client.ping()
        old_pid = embedded.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        assert _wait_until(lambda: not embedded.running, STOP_TIMEOUT)
        assert embedded.start(timeout=START_TIMEOUT) == url
        assert embedded.pid != old_pid
        with contextlib.suppress(redis.exceptions.ConnectionError):
            await client.ping()  # its pooled connection died with the old server
        assert await client.ping()  # and it reconnects to the URL it was given
    finally:
        await client.aclose()


def test_the_probe_connection_authenticates_and_a_wrong_password_is_final(
    tmp_path: Path, make_redis: MakeRedis
) -> None:
    """The supervisor's readiness probe (hiredis on a socket, no redis-py): a server that
    refuses the password is someone else's, which retrying cannot fix."""
    embedded = make_redis(tmp_path / ("d" * 60) / ("e" * 60))
    url = embedded.start(timeout=START_TIMEOUT)
    password = url.split("://:", 1)[1].split("@", 1)[0]
    address = ("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0]))
    with ProbeConnection(address, password, timeout=5) as probe:
        assert probe.call("PING") == b"PONG"
        assert b"loading:0" in probe.call("INFO", "persistence")
    with pytest.raises(AuthenticationFailed):
        ProbeConnection(address, "not-" + password, timeout=5)
    stranger = EmbeddedRedis(tmp_path / "other")
    stranger._password = "not-" + password
    with pytest.raises(EmbeddedRedisError, match="authentication failed"):
        stranger._answers(address)


def test_stop_shuts_redis_down_by_command(tmp_path: Path, make_redis: MakeRedis) -> None:
    embedded = make_redis(tmp_path)
    embedded.start(timeout=START_TIMEOUT)
    embedded.stop(timeout=STOP_TIMEOUT)
    log = (tmp_path / "redis.log").read_text()
    assert "User requested shutdown" in log and "Received SIGTERM" not in log


@pytest.mark.parametrize("policy", ["sometimes", "", "EVERYSEC"])
def test_invalid_appendfsync_raises(tmp_path: Path, policy: str) -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(tmp_path, appendfsync=policy)


@pytest.mark.parametrize("policy", ["always", "no"])
def test_valid_appendfsync_policies_start(
    tmp_path: Path, make_redis: MakeRedis, policy: str
) -> None:
    embedded = make_redis(tmp_path, appendfsync=policy)
    with embedded, redis.Redis.from_url(embedded.url, socket_timeout=5) as client:
        assert client.config_get("appendfsync") == {"appendfsync": policy}


def test_early_exit_raises_with_log_tail(tmp_path: Path, make_redis: MakeRedis) -> None:
    (tmp_path / AOF_NAME).write_text("this is not an append only file\n")
    embedded = make_redis(tmp_path)
    with pytest.raises(EmbeddedRedisError, match=r"(?s)exited with code 1.*Bad file format"):
        embedded.start(timeout=START_TIMEOUT)
    assert embedded.pid is None
    assert not (tmp_path / SOCK_NAME).exists()
