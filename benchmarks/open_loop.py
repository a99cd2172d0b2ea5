"""An open-loop load generator: requests arrive on a fixed schedule whether or not earlier ones were
answered, as real clients do under overload (a closed loop slows down with the server and hides it).

Arrivals are evenly spaced at ``rate`` per second; each takes an idle keep-alive connection or opens
a new one, and gives up after ``timeout_s`` as a client would. Latency counts from the scheduled
arrival, so time spent waiting for a connection is included.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.loadgen import _read_response

TIMEOUT = -2  # status recorded for a request the client gave up on
ERROR = -1  # connection refused, reset or closed


@dataclass
class OpenLoopResult:
    rate: float
    duration_s: float
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: dict[int, list[float]] = field(default_factory=dict)  # status -> latencies
    client_cpu_s: float = 0.0
    peak_connections: int = 0

    def record(self, status: int, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.setdefault(status, []).append(latency_ms)

    def percentiles(self, status: int) -> tuple[float | None, float | None]:
        values = self.latencies_ms.get(status)
        if not values:
            return None, None
        return round(float(np.percentile(values, 50)), 1), round(float(np.percentile(values, 99)), 1)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


async def _one(host: str, port: int, request: bytes, pool: list, scheduled: float, timeout_s: float,
               result: OpenLoopResult, open_count: list[int]) -> None:
    conn = pool.pop() if pool else None
    try:
        if conn is None:
            open_count[0] += 1
            result.peak_connections = max(result.peak_connections, open_count[0])
            conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        left = timeout_s - (time.perf_counter() - scheduled)
        status, _, keep = await asyncio.wait_for(_read_response(reader), max(0.001, left))
        if keep:
            pool.append(conn)
        else:  # Connection: close
            open_count[0] -= 1
            writer.close()
    except (asyncio.TimeoutError, TimeoutError):
        status = TIMEOUT
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
        status = ERROR
    if status in (TIMEOUT, ERROR):  # the connection is not reused
        open_count[0] -= 1
        if conn is not None:
            conn[1].close()
    result.record(status, (time.perf_counter() - scheduled) * 1000)


def run_open_loop(host: str, port: int, requests: list[bytes], rate: float, duration_s: float,
                  timeout_s: float = 30.0) -> OpenLoopResult:
    """Send ``rate`` requests per second for ``duration_s``; wait for the last ones (up to ``timeout_s``)."""

    async def main() -> OpenLoopResult:
        result = OpenLoopResult(rate, duration_s)
        pool: list = []
        open_count = [0]
        tasks = []
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        n = int(rate * duration_s)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(
                _one(host, port, requests[i % len(requests)], pool, scheduled, timeout_s, result, open_count)))
        await asyncio.gather(*tasks)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        result.client_cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        for _, writer in pool:
            writer.close()
        return result

    return asyncio.run(main())
