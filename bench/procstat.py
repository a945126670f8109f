"""Process CPU time and memory from /proc (Linux), and a sampler thread for timelines."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SYSTEM = "machine"  # pseudo-process: every core of the machine together


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` in seconds, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; fields after ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def system_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine spent busy (every core), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...
    values = [int(v) for v in first[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of `pid` in MiB; empty when the process is gone."""
    out: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all threads)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(p) for p in text.split())
    return found


@dataclass
class Sample:
    t: float  # time.monotonic()
    cpu: dict[str, float]  # name -> cumulative CPU seconds
    rss_mb: dict[str, float]  # name -> current RSS


@dataclass
class Sampler:
    """Samples CPU seconds and RSS of named processes every `interval` seconds."""

    pids: Callable[[], dict[str, int]]
    interval: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Sample:
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for name, pid in self.pids().items():
            seconds = cpu_seconds(pid)
            if seconds is not None:
                cpu[name] = seconds
                rss[name] = memory_mb(pid).get("VmRSS", 0.0)
        busy = system_busy_seconds()
        if busy is not None:
            cpu[SYSTEM] = busy
        sample = Sample(time.monotonic(), cpu, rss)
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def cpu_between(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds `name` used between two monotonic times (nearest samples)."""
        inside = [s for s in self.samples if start <= s.t <= end and name in s.cpu]
        if len(inside) < 2:
            return None
        return inside[-1].cpu[name] - inside[0].cpu[name]

    def timeline(self, origin: float) -> list[dict[str, object]]:
        """CPU % (100 = one core) per interval and RSS, relative to `origin`."""
        points: list[dict[str, object]] = []
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            span = after.t - before.t
            if span <= 0:
                continue
            pct = {
                name: round(100 * (after.cpu[name] - before.cpu[name]) / span, 1)
                for name in after.cpu
                if name in before.cpu
            }
            points.append(
                {"t": round(after.t - origin, 3), "cpu_pct": pct, "rss_mb": dict(after.rss_mb)}
            )
        return points


def other_cpu_pct(ours: list[int], window: float = 1.0) -> float | None:
    """CPU % (100 = one core) used by processes other than `ours` over `window` seconds."""
    busy0 = system_busy_seconds()
    mine0 = sum(cpu_seconds(p) or 0.0 for p in ours)
    time.sleep(window)
    busy1 = system_busy_seconds()
    mine1 = sum(cpu_seconds(p) or 0.0 for p in ours)
    if busy0 is None or busy1 is None:
        return None
    return max(0.0, 100 * ((busy1 - busy0) - (mine1 - mine0)) / window)


def wait_until_quiet(ours: list[int], limit_pct: float, max_wait: float) -> dict[str, float]:
    """Wait (at most `max_wait` s) until everything else on the machine uses less than
    `limit_pct` of one core, so a run is not measured while other work is running."""
    started = time.monotonic()
    other = other_cpu_pct(ours) or 0.0
    while other > limit_pct and time.monotonic() - started < max_wait:
        other = other_cpu_pct(ours) or 0.0
    return {"waited_s": round(time.monotonic() - started, 1), "other_pct_before": round(other, 1)}
