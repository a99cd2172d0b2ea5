"""The front door's admission limit, adapted to a latency target: a fixed count sets latency, not the other way.

The front door (lensgraph/front_door.py) lets at most ``maxconn`` requests inside Serve. Under overload
a request inside waits about ``maxconn / capacity`` (Little's law), so a fixed 32 means 0.34 s on a
machine that classifies 94 images a second and 1.1 s on one (or at an hour) that manages 29
(docs/reliability.md). This controller keeps that time near ``target_s`` whatever the capacity:

* every ``interval_s`` it reads HAProxy's counters for the one server line (requests inside now, and
  responses so far) through the admin socket, and over the last ``window_s`` estimates the time inside as
  mean in-flight / completions per second;
* only while requests fill at least 80% of the limit (it is what holds them back) and a window has at
  least ``MIN_RESPONSES`` answers: idle or light load, and a slow start-up, leave it alone;
* above the target it lowers the limit to what the measured completion rate carries within the target
  (``rate x target``; at most halved per window, at least ``min_limit``, an eighth of the maximum),
  then waits a full window of fresh samples;
* at or below the target it raises it by a quarter, at most to ``max_limit`` (the ingress's own
  admission count).

The pure arithmetic is :class:`LatencyLimit` (tested without HAProxy); :class:`Controller` is the thread
that ``lensgraph run`` and the overload benchmark start beside the front door.
"""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from collections import deque
from pathlib import Path

BACKEND, SERVER = "serve", "serve"  # front_door.render's backend and server line
MIN_RESPONSES = 8  # answers a window needs before its estimate counts
LOG_EVERY_S = 10.0  # under overload the limit moves every second or so: one log line per 10 s at most
DEFAULT_TARGET_S = 0.35  # time inside Serve; with the 100 ms door queue and a p99 of ~2x the mean: < 1 s


class LatencyLimit:
    """Limit from samples of (time, requests inside, responses so far)."""

    def __init__(self, max_limit: int, target_s: float, min_limit: int | None = None, window_s: float = 1.0):
        if max_limit < 1 or target_s <= 0:
            raise ValueError("max_limit >= 1 and target_s > 0")
        self.max_limit, self.target_s, self.window_s = max_limit, target_s, window_s
        # enough in flight to fill a batch: an eighth of the admission count, at least 2
        min_limit = max(2, max_limit // 8) if min_limit is None else min_limit
        self.min_limit = max(1, min(min_limit, max_limit))
        self.limit = max_limit
        self.samples: deque[tuple[float, int, int]] = deque()
        self.last_estimate_s: float | None = None

    def update(self, now: float, in_flight: int, responses: int) -> int | None:
        """Add a sample; the new limit when it changes, else None."""
        self.samples.append((now, in_flight, responses))
        while self.samples and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        t0, _, r0 = self.samples[0]
        span = now - t0
        if span < 0.75 * self.window_s:
            return None  # not a full window since the start or the last change
        rate = (responses - r0) / span
        inside = sum(s[1] for s in self.samples) / len(self.samples)
        if responses - r0 < MIN_RESPONSES:
            return None  # idle, starting, or too few answers in a window to judge
        self.last_estimate_s = inside / rate
        if inside < 0.8 * self.limit:
            return None  # the limit is not what holds requests back: lowering it would only refuse more
        if self.last_estimate_s > self.target_s:  # at most halved per window: one slow second is no verdict
            new = max(self.min_limit, self.limit // 2, min(self.limit - 1, int(rate * self.target_s)))
        else:
            new = min(self.max_limit, self.limit + max(1, self.limit // 4))
        if new == self.limit:
            return None
        self.limit = new
        self.samples.clear()  # judge the new limit on its own samples
        self.samples.append((now, in_flight, responses))
        return new


def admin(socket_path: Path, command: str, timeout_s: float = 1.0) -> str:
    """One command on HAProxy's admin socket (non-interactive: one command per connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(socket_path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_counters(socket_path: Path) -> tuple[int, int, int]:
    """(requests inside now, responses so far, current maxconn) of the front door's server line."""
    text = admin(socket_path, "show stat").lstrip("# ")
    for row in csv.DictReader(io.StringIO(text)):
        if row["pxname"] == BACKEND and row["svname"] == SERVER:
            responses = sum(int(row[f"hrsp_{k}"] or 0) for k in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))
            return int(row["scur"] or 0), responses, int(row["slim"] or 0)
    raise LookupError(f"no server {BACKEND}/{SERVER} in HAProxy's stats")


def set_limit(socket_path: Path, limit: int) -> None:
    answer = admin(socket_path, f"set maxconn server {BACKEND}/{SERVER} {limit}").strip()
    if answer:
        raise RuntimeError(f"HAProxy refused the new maxconn: {answer}")


class Controller(threading.Thread):
    """Samples the front door every ``interval_s`` and sets its limit; a daemon that outlives restarts
    of the HAProxy (a new process starts at ``max_limit`` again, and the controller follows it)."""

    def __init__(self, socket_path: Path, max_limit: int, target_s: float = DEFAULT_TARGET_S,
                 interval_s: float = 0.1, log=None):
        super().__init__(name="front-door-limit", daemon=True)
        self.socket_path, self.interval_s, self.log = Path(socket_path), interval_s, log
        self.limit = LatencyLimit(max_limit, target_s)
        self.stopped = threading.Event()
        self.changes, self.logged_at = 0, 0.0

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                inside, responses, current = server_counters(self.socket_path)
                if current != self.limit.limit:  # a restarted HAProxy, or the first sample
                    self.limit = LatencyLimit(self.limit.max_limit, self.limit.target_s, self.limit.min_limit,
                                              self.limit.window_s)
                    self.limit.limit = current if 0 < current <= self.limit.max_limit else self.limit.max_limit
                new = self.limit.update(time.monotonic(), inside, responses)
                if new is not None:
                    set_limit(self.socket_path, new)
                    self.changes += 1
                    if self.log and time.monotonic() - self.logged_at >= LOG_EVERY_S:
                        self.logged_at = time.monotonic()
                        self.log(f"front door limit {new} (time inside ~{self.limit.last_estimate_s:.2f} s, "
                                 f"target {self.limit.target_s:g} s)")
            except (OSError, LookupError, RuntimeError, ValueError, KeyError):
                continue  # HAProxy starting, restarting or stopping: try again at the next tick

    def stop(self) -> None:
        self.stopped.set()
