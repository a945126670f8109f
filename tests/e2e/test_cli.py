"""The `ducksheet` command as a user runs it: seed, check, serve with embedded Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from protocol.catalog import SUMMARY


def ducksheet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_seed_is_deterministic_and_check_passes(tmp_path: Path):
    for name in ("a", "b"):
        result = ducksheet(
            "seed", "--data-dir", str(tmp_path / name), "--sales", "5000", "--seed", "3"
        )
        assert result.returncode == 0, result.stderr
        assert "seeded 5,000 sales rows" in result.stdout
    tables = ("product", "customer", "sales", SUMMARY)
    with (
        duckdb.connect(str(tmp_path / "a" / "ducksheet.duckdb"), read_only=True) as a,
        duckdb.connect(str(tmp_path / "b" / "ducksheet.duckdb"), read_only=True) as b,
    ):
        for table in tables:
            # (cell_id, the writer's surrogate key, is numbered in no particular order)
            columns = "* EXCLUDE (cell_id)" if table == SUMMARY else "*"
            query = f"SELECT {columns} FROM {table} ORDER BY ALL"
            assert a.execute(query).fetchall() == b.execute(query).fetchall(), table
        months = a.execute("SELECT count(DISTINCT strftime(invoice_date, '%Y-%m')) FROM sales")
        assert months.fetchone()[0] == 24
        assert a.execute("SELECT count(*) FROM sales").fetchone()[0] == 5000
    check = ducksheet("check", "--data-dir", str(tmp_path / "a"))
    assert check.returncode == 0, check.stdout + check.stderr
    again = ducksheet("seed", "--data-dir", str(tmp_path / "a"))
    assert again.returncode == 2 and "--force" in again.stderr


def test_check_exits_nonzero_on_drift(tmp_path: Path):
    assert ducksheet("seed", "--data-dir", str(tmp_path), "--sales", "2000").returncode == 0
    with duckdb.connect(str(tmp_path / "ducksheet.duckdb")) as con:
        con.execute(
            f"UPDATE {SUMMARY} SET net_amount = net_amount + 0.01 WHERE level = 0 AND rowid = 1"
        )
    check = ducksheet("check", "--data-dir", str(tmp_path))
    assert check.returncode == 1
    assert "drift (actual):" in check.stdout and "footing (actual):" in check.stdout


def test_serve_seeds_starts_embedded_redis_and_stops_cleanly(tmp_path: Path):
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DUCKSHEET_SEED_SALES": "3000"},
    )
    try:
        port = _wait_for_port(process)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        assert health["status"] == "ok"
        redis_pid = int((data / "redis.pid").read_text())
        assert (data / "redis.sock").exists()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        # uvicorn re-raises the signal after its graceful shutdown
        assert process.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in output
    finally:
        if process.poll() is None:
            process.kill()
    assert not (data / "redis.sock").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)
    assert (data / "appendonly.aof").exists()
    with duckdb.connect(str(data / "ducksheet.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sales").fetchone()[0] == 3000


def _wait_for_port(process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError("server exited before it was ready")
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError("server did not report its port")


@pytest.mark.parametrize(("given", "expected"), [(None, "False"), ("1", "True")])
def test_the_server_keeps_numpy_off_huge_pages_unless_told(given: str | None, expected: str):
    # Huge-page faults cost a paste's decide 100-200 ms of system time (server/__init__.py).
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    probe = "import server, numpy._core.multiarray as m; print(m._get_madvise_hugepage())"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_serve_refuses_a_public_address_without_tokens_before_starting_anything(tmp_path: Path):
    env = {"DUCKSHEET_TOKENS": "", "DUCKSHEET_TOKENS_FILE": "", "REDIS_URL": ""}
    result = ducksheet(
        "serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0", env=env
    )
    assert result.returncode != 0
    assert "refusing to serve 0.0.0.0 without tokens" in result.stderr
    assert not list(tmp_path.iterdir())  # no database seeded, no Redis started


ROLE_IMPORTS = {
    # what `serve` (the supervisor), `serve --role web` and `serve --role data` import
    # before they serve, and what they must not: it stays in memory for the server's life
    "supervisor": (
        "server.supervisor",
        ("duckdb", "faker", "xlsxwriter", "numpy", "starlette", "redis", "prometheus_client"),
    ),
    "web": ("server.runner, server.app", ("duckdb", "faker", "xlsxwriter", "numpy", "seed")),
    "data": ("server.data_process, server.data_role", ("faker", "xlsxwriter")),
}


@pytest.mark.parametrize("role", ROLE_IMPORTS)
def test_a_process_keeps_only_the_modules_of_its_role(role: str):
    """Measured RSS after these imports: the supervisor 60.7 MB with the web app and
    DuckDB, 37.8 without, 23.3 without redis-py and prometheus_client too; a web process
    71.5 MB with the data role's modules, 48.3 without; a data process 82 MB with Faker
    and XlsxWriter, 73 without."""
    modules, absent = ROLE_IMPORTS[role]
    probe = (
        f"import sys, server.cli, {modules}; "
        f"print(sorted(m for m in {absent!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert found.stdout.strip() == "[]"
