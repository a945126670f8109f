"""Optional sampling profile of the server during a load run (py-spy, if installed)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any


class Profiler:
    """`py-spy record --format raw` (collapsed stacks) on the server for one run."""

    def __init__(self, pid: int, out: Path, seconds: float, rate: int = 100) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy") or _venv_py_spy()
        if exe is None:
            return
        self.proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))),
                *("--rate", str(rate), "--format", "raw", "--nonblocking", "--threads"),
                "--subprocesses",  # serve runs the data and web roles as children
                *("--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self, timeout: float = 60.0) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        if not self.out.exists():
            return None
        return summarize_collapsed(self.out)


def _venv_py_spy() -> str | None:
    import sys

    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def summarize_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples per thread, and the functions with the most samples on the
    stack (inclusive) and at its top (self), from py-spy's collapsed stacks."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        names = [_short(f) for f in frames[1:]]
        for name in set(names):
            inclusive[name] += count
        if names:
            self_time[names[-1]] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "file": str(path),
        "threads_pct": share(threads),
        "inclusive_pct": share(inclusive),
        "self_pct": share(self_time),
    }


def _short(frame: str) -> str:
    """`send_text (starlette/websockets.py:123)` -> `send_text (starlette/websockets.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name
