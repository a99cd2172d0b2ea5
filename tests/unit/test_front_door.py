"""The front door (lensgraph/front_door.py): the real HAProxy binary in front of a slow HTTP server."""

from __future__ import annotations

import concurrent.futures
import http.server
import subprocess
import threading
import time

import httpx
import pytest
import yaml

from lensgraph import front_door
from lensgraph.devcluster import free_port
from lensgraph.settings import project_root


def test_capacity_is_the_ingress_admission_limit_of_the_config():
    config = yaml.safe_load((project_root() / "serve_config.yaml").read_text())
    ingress = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Preprocessor")
    assert front_door.capacity(config) == ingress["num_replicas"] * ingress["user_config"]["max_in_flight"]
    inner = front_door.inner_config(config, 12345)
    assert inner["http_options"]["host"] == "127.0.0.1" and inner["http_options"]["port"] == 12345
    assert config["http_options"]["port"] == 8000, "the original is left alone"


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    dropped: list[str] = []  # /v1/flaky: the first request of each id is dropped unanswered, as by a dying replica

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        received = self.rfile.read(length)
        if self.path.startswith("/v1/flaky") and self.headers["x-request-id"] not in _Slow.dropped:
            _Slow.dropped.append(self.headers["x-request-id"])
            if self.path == "/v1/flaky500":  # what Serve's HAProxy answers for a replica that died
                self.send_response(500)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", "21")
                self.end_headers()
                self.wfile.write(b"Internal Server Error")
                return
            self.close_connection = True
            return
        if self.path.startswith("/v1/flaky"):
            body = str(len(received)).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(0.5 if self.path == "/v1/classify" else 0)
        body = self.headers.get("x-request-id", "").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-request-id", self.headers.get("x-request-id", ""))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def door(tmp_path):
    inner_port, port = free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", inner_port), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = tmp_path / "front_door.cfg"
    cfg.write_text(front_door.render("127.0.0.1", port, inner_port, max_in_flight=2, queue_timeout_ms=50))
    check = subprocess.run([str(front_door.haproxy_binary()), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([str(front_door.haproxy_binary()), "-db", "-f", str(cfg)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    proc.kill()
    proc.wait()
    server.shutdown()


def test_over_capacity_is_refused_by_haproxy_with_the_api_json(door):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(door + "/v1/classify", content=b"x", timeout=10), range(8)))
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 503]
    assert len(ok) >= 2 and refused and len(ok) + len(refused) == 8, [r.status_code for r in answers]
    for r in refused:
        assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "overloaded" and "at capacity" in r.json()["message"]
        assert r.headers["x-request-id"], "HAProxy gave the refused request an id"
    for r in ok:  # the id the front door made reached the server
        assert r.headers["x-request-id"] and r.text == r.headers["x-request-id"]


def test_probes_pass_the_limit_and_a_client_request_id_is_kept(door):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(httpx.post, door + "/v1/classify", content=b"x", timeout=10) for _ in range(2)]
        time.sleep(0.1)  # both slots taken
        probe = httpx.get(door + "/readyz", timeout=10)
        assert probe.status_code == 200
        [f.result() for f in slow]
    mine = httpx.post(door + "/v1/classify", content=b"x", timeout=10, headers={"x-request-id": "abc-1"})
    assert mine.status_code == 200 and mine.text == "abc-1"


def test_a_non_ascii_request_id_is_a_400_json_and_a_printable_one_passes(door):
    bad = httpx.post(door + "/v1/digits", content=b"x", headers={"X-Request-ID": b"id-\xff\xfe"}, timeout=10)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/json", bad.text
    assert bad.json()["error"] == "invalid_request_id" and bad.headers["x-request-id"]
    good = httpx.post(door + "/v1/digits", content=b"x", headers={"X-Request-ID": "client-id 42:~"}, timeout=10)
    assert good.status_code == 200 and good.text == "client-id 42:~"


@pytest.mark.parametrize("path", ["/v1/flaky", "/v1/flaky500"])
def test_a_request_lost_inside_is_sent_once_more_with_its_whole_body(door, path):
    """Dropped unanswered, or Serve's bare 500 for a dead replica: the front door sends it once more."""
    photo = bytes(range(256)) * 3000  # 768 kB, the size of the largest benchmark photo
    answer = httpx.post(door + path, content=photo, headers={"X-Request-ID": "retry" + path}, timeout=10)
    assert answer.status_code == 200 and answer.text == str(len(photo))
    assert _Slow.dropped.count("retry" + path) == 1, "lost once, answered on the second try"
