"""``lensgraph client watch --url URL --every 10s``: probe every route of a running deployment periodically.

Each round sends one small request per route (classify, faces, landmarks, digits; a drawn image each, so no
assets folder is needed) and ``GET /readyz``, and prints a table: availability (share of 2xx answers), p50/p99
latency over the last ``--window`` probes, and the answers counted by status. ``--textfile PATH`` also writes
the same numbers in Prometheus' text format, atomically, for node-exporter's textfile collector. ``--count N``
stops after N rounds (exit status 1 when a probe of the last round failed); otherwise it runs until Ctrl-C.
"""

from __future__ import annotations

import collections
import io
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PROBES", "RouteStats", "parse_every", "prometheus_text", "run"]

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_every(text: str) -> float:
    """``10s``, ``500ms``, ``2m``, ``1h`` or plain seconds -> seconds (> 0)."""
    match = DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--every wants a duration like 10s, 500ms or 2m, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def _png(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo() -> bytes:
    """A 320x240 picture with a face-like blob: any route can answer it (the answer is not judged here)."""
    import cv2
    import numpy as np

    canvas = np.full((240, 320, 3), 180, np.uint8)
    cv2.ellipse(canvas, (160, 120), (60, 80), 0, 0, 360, (200, 160, 140), -1)
    return _png(canvas)


def _digit() -> bytes:
    from lensgraph.cli.client_check import drawn

    return drawn("3")()


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: Callable[[], bytes] | None = None


PROBES = (
    Probe("readyz", "GET", "/readyz"),
    Probe("classify", "POST", "/v1/classify", _photo),
    Probe("faces", "POST", "/v1/faces", _photo),
    Probe("landmarks", "POST", "/v1/landmarks", _photo),
    Probe("digits", "POST", "/v1/digits", _digit),
)


@dataclass
class RouteStats:
    """What the probes of one route have seen: latencies of the last ``window`` answers, statuses since start."""

    window: int = 100
    latencies: collections.deque = field(default_factory=collections.deque)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    last_ok: bool = False

    def add(self, status: str, seconds: float | None) -> None:
        self.statuses[status] += 1
        self.last_ok = status.startswith("2")
        if seconds is not None:
            self.latencies.append(seconds)
            while len(self.latencies) > self.window:
                self.latencies.popleft()

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def availability(self) -> float:
        ok = sum(n for status, n in self.statuses.items() if status.startswith("2"))
        return ok / self.total if self.total else 0.0

    def quantile(self, q: float) -> float | None:
        from lensgraph.cli.client_check import percentile

        return percentile(list(self.latencies), q) if self.latencies else None


def probe_once(client, base: str, probe: Probe, payloads: dict[str, bytes]) -> tuple[str, float | None]:
    """(status as text, seconds) of one probe; a request that got no answer is ``error`` with no latency."""
    import httpx

    start = time.perf_counter()
    try:
        if probe.method == "GET":
            response = client.get(base + probe.path)
        else:
            response = client.post(base + probe.path, content=payloads[probe.name],
                                   headers={"content-type": "image/png"})
    except httpx.HTTPError:
        return "error", None
    return str(response.status_code), time.perf_counter() - start


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(stats: dict[str, RouteStats], url: str, now: float) -> str:
    """The probes' numbers in Prometheus' text exposition format (names documented in docs/clients.md)."""
    u = _label(url)
    lines = ["# HELP lensgraph_probe_requests_total Probe answers by route and status (error: no answer).",
             "# TYPE lensgraph_probe_requests_total counter"]
    for route, s in stats.items():
        for status, n in sorted(s.statuses.items()):
            lines.append(f'lensgraph_probe_requests_total{{url="{u}",route="{route}",status="{status}"}} {n}')
    lines += ["# HELP lensgraph_probe_latency_seconds Probe latency over the last --window answers.",
              "# TYPE lensgraph_probe_latency_seconds gauge"]
    for route, s in stats.items():
        for q in (0.5, 0.99):
            value = s.quantile(q)
            if value is not None:
                lines.append(f'lensgraph_probe_latency_seconds{{url="{u}",route="{route}",quantile="{q}"}} {value:.6f}')
    lines += ["# HELP lensgraph_probe_up 1 when the route's last probe answered 2xx.",
              "# TYPE lensgraph_probe_up gauge"]
    lines += [f'lensgraph_probe_up{{url="{u}",route="{route}"}} {int(s.last_ok)}' for route, s in stats.items()]
    lines += ["# HELP lensgraph_probe_last_round_timestamp_seconds When the last round of probes ended.",
              "# TYPE lensgraph_probe_last_round_timestamp_seconds gauge",
              f'lensgraph_probe_last_round_timestamp_seconds{{url="{u}"}} {now:.3f}']
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """The textfile collector must never read half a file: write beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def table(stats: dict[str, RouteStats]) -> str:
    from lensgraph.cli.client_cmd import _table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f}"

    rows = [(route, f"{s.availability:.1%}", ms(s.quantile(0.5)), ms(s.quantile(0.99)), s.total,
             " ".join(f"{k}:{v}" for k, v in sorted(s.statuses.items())), "up" if s.last_ok else "DOWN")
            for route, s in stats.items()]
    return _table(("ROUTE", "AVAILABLE", "P50 MS", "P99 MS", "PROBES", "BY STATUS", "LAST"), rows)


def run(args: Any) -> int:
    """Rounds of probes until ``--count`` rounds (or Ctrl-C); exit 1 when a probe of the last round failed."""
    import httpx

    from lensgraph.cli.client_cmd import auth_headers

    try:
        every = parse_every(args.every)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = args.url.rstrip("/")
    payloads = {p.name: p.body() for p in PROBES if p.body is not None}
    stats = {p.name: RouteStats(window=args.window) for p in PROBES}
    textfile = Path(args.textfile) if args.textfile else None
    live = sys.stdout.isatty()
    rounds = 0
    try:
        with httpx.Client(timeout=args.timeout, headers=auth_headers(args.api_key)) as client:
            while True:
                started = time.monotonic()
                for probe in PROBES:
                    stats[probe.name].add(*probe_once(client, base, probe, payloads))
                rounds += 1
                if textfile is not None:
                    write_atomically(textfile, prometheus_text(stats, base, time.time()))
                header = f"{base}: round {rounds}" + (f" of {args.count}" if args.count else "") + \
                    f", every {every:g} s" + (f", Prometheus text in {textfile}" if textfile else "")
                print(("\x1b[H\x1b[2J" if live else "") + header + "\n" + table(stats), flush=True)
                if args.count and rounds >= args.count:
                    break
                time.sleep(max(0.0, every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
    return 0 if all(s.last_ok for s in stats.values()) else 1
