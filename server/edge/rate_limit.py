"""Per-connection rate limiting."""

from __future__ import annotations

import time

from protocol.errors import ProtocolError


class RateLimited(ProtocolError):
    """Too many requests; `persistent` once the client keeps going while limited."""

    def __init__(self, persistent: bool) -> None:
        super().__init__("rate_limited", "too many edits; slow down")
        self.persistent = persistent


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each request takes one (a block
    edit more)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._refused = 0  # requests refused since the last one let through

    def take(self, count: int = 1) -> None:
        if count <= 0:
            return
        count = min(count, self.burst)  # a request the bucket can never hold still passes
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= count:
            self._tokens -= count
            self._refused = 0
            return
        self._refused += 1
        raise RateLimited(persistent=self._refused > self.burst)
