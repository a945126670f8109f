"""Progress of long command-line work: a bar redrawn in place on a terminal, plain
lines when the output is a file or a pipe, so that logs stay readable."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24  # characters of the bar
CLEAR_LINE = "\x1b[K"
PLAIN_EVERY = 0.25  # share of a step between plain lines about its rows


class Progress:
    """`step(message)` starts the next of `total` steps; `rows(done, of)` shows how far
    the current step is; `finish(message)` ends with a line that stays."""

    def __init__(self, total: int, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.message = ""
        self.started = time.perf_counter()
        self._drawn = False
        self._next_plain = PLAIN_EVERY

    def step(self, message: str) -> None:
        self.done = min(self.done + 1, self.total)
        self.message = message
        self._next_plain = PLAIN_EVERY
        self._show((self.done - 1) / self.total, message)

    def rows(self, done: int, of: int) -> None:
        share = min(done / of, 1.0) if of else 1.0
        if not self.tty:
            if share < self._next_plain and done < of:
                return
            self._next_plain = share + PLAIN_EVERY
        fraction = (max(self.done - 1, 0) + share) / self.total
        self._show(fraction, f"{self.message}: {done:,} of {of:,}")

    def finish(self, message: str) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r" + CLEAR_LINE)
        self.stream.write(f"{message} ({self.elapsed():.2f}s)\n")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _show(self, fraction: float, text: str) -> None:
        position = f"{self.done}/{self.total}"
        if self.tty:
            filled = round(fraction * WIDTH)
            bar = "#" * filled + "." * (WIDTH - filled)
            line = f"\r[{bar}] {position} {text} ({self.elapsed():.1f}s){CLEAR_LINE}"
            self.stream.write(line)
            self._drawn = True
        else:
            self.stream.write(f"[{position}] {text} ({self.elapsed():.1f}s)\n")
        self.stream.flush()
