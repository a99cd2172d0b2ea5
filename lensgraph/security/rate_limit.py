"""A token bucket per client, in one process (the service keeps one per ingress replica).

Each client (an API key, or a client address when keys are off) has a bucket of ``burst`` tokens that
refills at ``rate`` tokens a second; a request takes one token or is refused with how long until one is
there. Buckets live in a dict bounded by ``max_clients``: when it is full, buckets that have refilled
completely (clients idle for ``burst / rate`` seconds, whose state is the same as a new bucket's) are
dropped; if more than half remain, the least recently seen go until half remain. So a flood of new
client names costs bounded memory and amortised O(log n) time per new client; only with more than
``max_clients / 2`` clients seen since a bucket's last request can it be dropped (it starts full again).

The clock is injected (``time.monotonic`` by default), so tests are exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate > 0, burst >= 1 and max_clients >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[object, list[float]] = {}  # client -> [tokens, time of that count]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: object) -> float:
        """0.0 when the request may go ahead (a token is spent), else the seconds until a token is there."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> int:
        """``Retry-After`` is whole seconds: rounded up, at least 1."""
        return max(1, math.ceil(wait_s))

    def _evict(self, now: float) -> None:
        idle = [c for c, (tokens, stamp) in self._buckets.items() if tokens + (now - stamp) * self.rate >= self.burst]
        for client in idle:
            del self._buckets[client]
        target = self.max_clients // 2  # room for many new clients before the next sweep
        if len(self._buckets) > target:
            by_last_use = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for client in by_last_use[: len(self._buckets) - target]:  # least recently seen first
                del self._buckets[client]
