"""Docs that run: every `curl` and `ducksheet` example in the README, against a server
seeded exactly as `make run` seeds (so the names in the examples must exist), then the
command-line ones with that server stopped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from helpers import serve_process

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTED_BASE = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# curl fails on an HTTP error status, so an example answering 4xx/5xx fails the test.
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body -sS "$@"; }\n'


def shell_examples() -> tuple[list[str], list[str]]:
    """(blocks that talk to a server, blocks of `ducksheet` commands), in README order."""
    server, offline = [], []
    for block in FENCE.findall(README.read_text()):
        first = block.lstrip().split(maxsplit=1)[0] if block.strip() else ""
        if first == "ducksheet":
            offline.append(block)
        elif "curl " in block and first in ("curl", "id=$(curl"):
            server.append(block)
    return server, offline


def run_block(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", PRELUDE + block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_unlocked(database: Path) -> None:
    """Until the stopped server has released the DuckDB file."""
    deadline = time.monotonic() + 30
    while True:
        try:
            duckdb.connect(str(database), read_only=True).close()
            return
        except duckdb.IOException:
            assert time.monotonic() < deadline, "the server kept the database locked"
            time.sleep(0.1)


def test_every_readme_shell_example_runs(tmp_path: Path):
    server_blocks, offline_blocks = shell_examples()
    assert len(server_blocks) >= 5 and len(offline_blocks) >= 1
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    (work / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "sample_sales.csv", work / "docs")
    bin_dir = str(Path(sys.executable).parent)  # `ducksheet` of this environment
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DUCKSHEET_DATA_DIR": str(data)}
    for name in list(env):
        if name.startswith("DUCKSHEET_") and name != "DUCKSHEET_DATA_DIR":
            del env[name]  # the defaults of `make run`
    with serve_process(data, {}) as (base, _log):
        for block in server_blocks:
            done = run_block(block.replace(DOCUMENTED_BASE, base), work, env)
            assert done.returncode == 0, f"{block}\n---\n{done.stdout}\n{done.stderr}"
            assert '"conflict"' not in done.stdout, block
    wait_unlocked(data / "ducksheet.duckdb")
    for block in offline_blocks:
        done = run_block(block, work, env)
        assert done.returncode == 0, f"{block}\n---\n{done.stdout}\n{done.stderr}"
    assert (work / "plan.xlsx").stat().st_size > 0 and (work / "sales.parquet").exists()
    assert "summary is exact" in done.stdout
