"""A low-overhead HTTP load generator: pre-built requests over keep-alive sockets, asyncio streams.

On a 2-core machine the client competes with the server for CPU, so it must cost as little as
possible per request: no HTTP library, requests serialised once, responses read by
Content-Length. It reports its own CPU time so results can say how much of the machine it took.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from dataclasses import dataclass, field

import numpy as np


def build_request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def multipart(body: bytes, filename: str = "image.jpg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    payload = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return payload, f"multipart/form-data; boundary={boundary}"


@dataclass
class LoadResult:
    concurrency: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    timeline: list[tuple[float, int, float]] | None = None  # (end time, status or -1, latency ms) when asked for

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "concurrency": self.concurrency,
            "requests": self.completed,
            "failures": self.failures,
            "throughput_rps": round(self.completed / self.duration_s, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "client_cpu_share": round(self.client_cpu_s / self.duration_s, 3),
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server keeps the connection open: not after ``Connection: close``)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked, keep = 0, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and "close" in value.lower():
            keep = False
    if chunked:
        chunks = []
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        return status, b"".join(chunks), keep
    return status, await reader.readexactly(length), keep


async def _worker(host, port, requests, deadline, result: LoadResult, max_requests: int | None, counter: list[int]):
    reader = writer = None
    i = 0
    while time.perf_counter() < deadline and (max_requests is None or counter[0] < max_requests):
        counter[0] += 1
        request = requests[i % len(requests)]
        i += 1
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            status, _, keep = await _read_response(reader)
            if not keep:  # the server said it closes this connection (a draining proxy does): open a new one
                writer.close()
                reader = writer = None
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            result.failures += 1
            if result.timeline is not None:
                result.timeline.append((time.perf_counter(), -1, (time.perf_counter() - start) * 1000))
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if result.timeline is not None:
            result.timeline.append((time.perf_counter(), status, (time.perf_counter() - start) * 1000))
        if status == 200:
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
        else:
            result.failures += 1
    if writer is not None:
        writer.close()


def run_load(host: str, port: int, requests: list[bytes], concurrency: int, duration_s: float,
             warmup_s: float = 2.0, max_requests: int | None = None, timeline: bool = False) -> LoadResult:
    """Closed-loop load: ``concurrency`` connections, each sending the next request when answered.

    ``timeline``: also record every request's end time (perf_counter), status and latency.
    """

    async def main() -> LoadResult:
        if warmup_s > 0:
            warm = LoadResult(concurrency, warmup_s)
            await asyncio.gather(*(_worker(host, port, requests, time.perf_counter() + warmup_s, warm, None, [0])
                                   for _ in range(concurrency)))
        result = LoadResult(concurrency, duration_s, timeline=[] if timeline else None)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        counter = [0]
        await asyncio.gather(*(_worker(host, port, requests, start + duration_s, result, max_requests, counter)
                               for _ in range(concurrency)))
        result.duration_s = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        result.client_cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        return result

    return asyncio.run(main())


if __name__ == "__main__":  # quick manual use: python -m benchmarks.loadgen URL FILE [concurrency] [seconds]
    import sys
    from urllib.parse import urlparse

    url = urlparse(sys.argv[1])
    body, ctype = open(sys.argv[2], "rb").read(), "application/octet-stream"
    req = build_request(url.hostname, url.port or 80, url.path, body, "image/jpeg")
    res = run_load(url.hostname, url.port or 80, [req], int(sys.argv[3]) if len(sys.argv) > 3 else 8,
                   float(sys.argv[4]) if len(sys.argv) > 4 else 10)
    print(json.dumps(res.summary()))
