"""Long CLI work shows a bar on a terminal (a real pseudo-terminal here) and plain
lines when its output goes to a pipe."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from server.progress import Progress

SEED = [sys.executable, "-m", "server.cli", "seed", "--sales", "2000"]


def run_on_a_terminal(argv: list[str]) -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_seed_draws_a_bar_on_a_terminal(tmp_path: Path):
    output = run_on_a_terminal([*SEED, "--data-dir", str(tmp_path)])
    assert "\r[" in output and "] 3/3 building the summary" in output
    assert "#" * 8 in output
    assert "\r\x1b[Kseeded 2,000 sales rows" in output  # the bar line is cleared, then the result


def test_seed_prints_plain_lines_to_a_pipe(tmp_path: Path):
    done = subprocess.run(
        [*SEED, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    assert "\r" not in done.stdout and "\x1b" not in done.stdout
    assert [line.split("]")[0] for line in lines[:3]] == ["[1/3", "[2/3", "[3/3"]
    assert lines[-1].startswith("seeded 2,000 sales rows")


def test_rows_within_a_step_are_throttled_off_a_terminal():
    out = io.StringIO()
    bar = Progress(2, out, tty=False)
    bar.step("writing")
    for done in range(0, 1001, 10):
        bar.rows(done, 1000)
    bar.finish("written")
    lines = out.getvalue().splitlines()
    assert len(lines) <= 8 and lines[-2].startswith("[1/2] writing: 1,000 of 1,000")
    on_terminal = io.StringIO()
    bar = Progress(2, on_terminal, tty=True)
    bar.step("writing")
    bar.rows(500, 1000)
    assert (
        "[######......" in on_terminal.getvalue()
    )  # a quarter of the whole: step 1 of 2, half done
