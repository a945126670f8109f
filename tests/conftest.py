"""Shared fixtures: one real embedded Redis per session, real DuckDB files per test,
and real servers on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import httpx
import hypothesis
import pytest
import redis

from seed.generate import Shape, seed_database
from server.config import Settings
from server.runner import make_server
from server.services import Services
from server.store.embedded_redis import EmbeddedRedis
from server.writer.before_image import prepare

SMALL = Shape(suppliers=3, brands=(2, 3), families=(2, 3), products=(2, 3), customers=50)
SMALL_SALES = 3000


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded redis-server, shared by the session (external one via REDIS_URL)."""
    external = os.environ.get("DUCKSHEET_TEST_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as embedded:
        yield embedded.url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A clean Redis for each test."""
    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ducksheet.duckdb"
    with duckdb.connect(str(path)) as con:
        seed_database(con, sales=SMALL_SALES, seed=7, shape=SMALL)
    return path


@pytest.fixture
def data_dir(tmp_path: Path, template_db: Path) -> Path:
    """A data dir holding a fresh copy of the small seeded database."""
    directory = tmp_path / "data"
    directory.mkdir()
    shutil.copy(template_db, directory / "ducksheet.duckdb")
    return directory


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    return data_dir / "ducksheet.duckdb"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(db_path)) as connection:
        prepare(connection)
        yield connection


@dataclass
class RunningServer:
    base: str  # http://127.0.0.1:PORT
    services: Services

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10)


# Tests wait for DuckDB after nearly every request (`?wait`, `min_seq`, reads): group
# commits every 20 ms instead of 200 keep those waits short; under load the persister
# gathers groups all the same. Servers of this process and `ducksheet serve` children.
GROUP_COMMIT_MS = 20
os.environ.setdefault("DUCKSHEET_GROUP_COMMIT_MS", str(GROUP_COMMIT_MS))


@contextlib.asynccontextmanager
async def run_server(settings: Settings) -> AsyncIterator[RunningServer]:
    if settings.group_commit_ms == Settings.group_commit_ms:  # not chosen by the test
        settings = replace(settings, group_commit_ms=GROUP_COMMIT_MS)
    server = make_server(replace(settings, host="127.0.0.1", port=0), log_level="warning")
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("server did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningServer(f"http://127.0.0.1:{port}", server.app.state.services)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def server(data_dir: Path, redis_url: str) -> AsyncIterator[RunningServer]:
    settings = Settings(data_dir=data_dir, redis_url=redis_url, port=0)
    async with run_server(settings) as running:
        yield running


SLOW = os.environ.get("SLOW", "") not in ("", "0")

# No per-example deadline anywhere: speed is the bench's business, and hypothesis's 200 ms
# default failed a pure spreading test on a slow host (272 ms for one example).
hypothesis.settings.register_profile("ducksheet", deadline=None)
hypothesis.settings.load_profile("ducksheet")
# scripts/mutation_check.py: a failing example is enough there, shrinking it is not needed
# (and can take minutes per mutation).
NO_SHRINKING = [hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate]
hypothesis.settings.register_profile(
    "mutation", hypothesis.settings.get_profile("ducksheet"), phases=NO_SHRINKING
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests (the long fault cycles) run only with SLOW=1 (`make test-slow`);
    deselected otherwise, not skipped, so CI's no-skip rule still holds."""
    if SLOW:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The outcome distribution the property tests reached (issue: report it)."""
    from helpers import OUTCOME_REPORTS

    for test, counts in OUTCOME_REPORTS.items():
        if counts:
            shown = ", ".join(f"{code} {n}" for code, n in counts.most_common())
            terminalreporter.write_line(f"outcomes reached by {test}: {shown}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI a skipped test means a dependency is missing there: fail the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        print(f"\nCI: {skipped} test(s) skipped; every dependency must be present on CI")
        session.exitstatus = 1


# The writer tests: a tiny seeded database and fresh copies of it.
TINY = Shape(suppliers=2, brands=(2, 2), families=(2, 2), products=(1, 2), customers=10)
_copies = count(1)


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.duckdb"
    with duckdb.connect(str(path)) as con:
        seed_database(con, sales=300, seed=11, shape=TINY)
    return path


@pytest.fixture
def fresh(tiny_db: Path, tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh copies (hypothesis runs many examples per test call)."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def make() -> duckdb.DuckDBPyConnection:
        path = tmp_path / f"copy{next(_copies)}.duckdb"
        shutil.copy(tiny_db, path)
        con = duckdb.connect(str(path))
        prepare(con)
        opened.append(con)
        return con

    yield make
    for con in opened:
        con.close()
