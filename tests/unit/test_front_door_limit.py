"""The front door's adaptive limit (lensgraph/front_door_limit.py): the arithmetic on a simulated queue,
and the controller on the real HAProxy's admin socket in front of a slow HTTP server."""

from __future__ import annotations

import concurrent.futures
import http.server
import subprocess
import threading
import time

import httpx
import pytest

from lensgraph import front_door, front_door_limit
from lensgraph.devcluster import free_port
from lensgraph.front_door_limit import LatencyLimit


def _saturated(limit: LatencyLimit, capacity: float, seconds: float, start: float = 0.0, dt: float = 0.1):
    """A server that completes ``capacity`` requests a second while as many as the limit allows wait inside."""
    t, done, seen = start, 0.0, []
    while t < start + seconds:
        t += dt
        done += capacity * dt
        limit.update(t, limit.limit, int(done))
        seen.append(limit.limit)
    return seen


@pytest.mark.parametrize("capacity", [29.0, 94.0])
def test_under_overload_the_limit_settles_where_the_time_inside_meets_the_target(capacity):
    limit = LatencyLimit(max_limit=32, target_s=0.35)
    seen = _saturated(limit, capacity, 30)
    wanted = min(32, capacity * 0.35)  # Little's law: limit / capacity = time inside
    settled = seen[-100:]
    assert min(settled) >= 0.75 * wanted - 1 and max(settled) <= min(32, 1.25 * wanted + 1), (wanted, settled[-20:])


def test_a_limit_that_was_lowered_grows_back_when_the_service_is_fast_again():
    limit = LatencyLimit(max_limit=32, target_s=0.35)
    _saturated(limit, 20.0, 20)
    assert limit.limit <= 8
    _saturated(limit, 200.0, 20, start=20.0)  # the time inside is now far under the target
    assert limit.limit == 32


def test_idle_or_light_load_leaves_the_limit_alone():
    limit = LatencyLimit(max_limit=32, target_s=0.35)
    for i in range(100):  # nothing inside, nothing done: no evidence
        assert limit.update(i * 0.1, 0, 0) is None
    for i in range(100):  # 3 inside at 100 req/s: 30 ms inside, far under the target and the limit unused
        assert limit.update(10 + i * 0.1, 3, 10 * i) is None
    assert limit.limit == 32


def test_a_slow_start_or_a_limit_that_holds_nothing_back_is_left_alone():
    limit = LatencyLimit(max_limit=32, target_s=0.35)
    for i in range(50):  # the first requests of a fresh service: 8 inside for 1.5 s each, under 8 answers a window
        assert limit.update(i * 0.1, 8, int(i * 0.1 * 8 / 1.5)) is None
    for i in range(50):  # 8 inside, 1.5 s each, for long enough to judge: slow, but not queued at the door
        assert limit.update(5 + i * 0.1, 8, 100 + int(i * 0.1 * 8 / 1.5) * 10) is None
    assert limit.limit == 32


def test_one_window_at_most_halves_the_limit_and_it_never_leaves_its_bounds():
    limit = LatencyLimit(max_limit=32, target_s=0.1)
    seen = _saturated(limit, 10.0, 30)
    assert seen[:12].count(16) and min(seen) == limit.min_limit == 4, seen[:30]
    limit = LatencyLimit(max_limit=8, target_s=0.1, min_limit=2)
    assert max(_saturated(limit, 10.0, 30)) <= 8 and limit.limit == 2
    with pytest.raises(ValueError):
        LatencyLimit(max_limit=0, target_s=0.1)


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(0.5)  # every request takes 0.5 s inside, however many there are
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def test_the_controller_lowers_the_real_haproxy_limit_when_requests_wait_over_the_target(tmp_path):
    inner_port, port = free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", inner_port), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sock = tmp_path / "door.sock"
    cfg = tmp_path / "door.cfg"
    cfg.write_text(front_door.render("127.0.0.1", port, inner_port, max_in_flight=8, queue_timeout_ms=50,
                                     admin_socket=sock))
    proc = subprocess.Popen([str(front_door.haproxy_binary()), "-db", "-f", str(cfg)])
    controller = front_door_limit.Controller(sock, max_limit=8, target_s=0.2)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        assert front_door_limit.server_counters(sock)[2] == 8, "the configured limit, read back from HAProxy"
        controller.start()
        stop = time.monotonic() + 5
        statuses: list[int] = []

        def client() -> None:
            with httpx.Client(timeout=10) as c:
                while time.monotonic() < stop:
                    statuses.append(c.post(f"http://127.0.0.1:{port}/v1/classify", content=b"x").status_code)

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            for f in [pool.submit(client) for _ in range(12)]:
                f.result()
        inside, responses, limit = front_door_limit.server_counters(sock)
        # 0.5 s inside against a 0.2 s target: the limit halves to its floor (8 -> 4 -> 2) and HAProxy holds it
        assert limit == 2 and controller.changes >= 1, (limit, controller.changes)
        assert responses == statuses.count(200) and set(statuses) <= {200, 503}
        assert 503 in statuses, "with a lower limit more of the 12 clients are refused at the door"
    finally:
        controller.stop()
        proc.kill()
        proc.wait()
        server.shutdown()
