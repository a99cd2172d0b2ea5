"""Overload, deadlines and faults on a real app whose limits are tiny: each ingress replica admits 4
requests at once and the Classifier queues 1 per caller. Whatever refuses (the ingress or a full model
queue) answers the same 503 JSON with Retry-After; a request past its deadline gets the 504 JSON; a
model replica killed under load fails no request (the ingress retries once); the service keeps
answering."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from lensgraph import front_door
from lensgraph.devcluster import free_port
from tests.integration.conftest import running_server

pytestmark = pytest.mark.serve
INGRESS_LIMIT = 4
LIMITS = {
    "Preprocessor": {"user_config": {"decode_threads": 0, "max_in_flight": INGRESS_LIMIT, "request_timeout_s": 30}},
    "Classifier": {"max_ongoing_requests": 1, "max_queued_requests": 1, "user_config": {
        "max_batch_size": 1, "batch_wait_timeout_s": 0.0, "inference_threads": 1, "intra_op_threads": 1}},
}


@pytest.fixture(scope="module")
def small_app(repository, assets, tmp_path_factory):
    with running_server(repository, assets, tmp_path_factory.mktemp("small"), overrides=LIMITS) as server:
        yield server


@pytest.fixture(scope="module")
def small_server(small_app):
    return small_app.url


async def _burst(url: str, body: bytes, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url, content=body, headers={"content-type": "image/jpeg"})
                                      for _ in range(n)))


def test_over_the_limit_is_refused_at_once_with_json_and_retry_after(small_server, assets):
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    responses = asyncio.run(_burst(small_server + "/v1/classify", photo, 40))
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 503], statuses
    refusals = set()
    for r in responses:
        assert r.headers["content-type"].startswith("application/json")
        assert len(r.headers.get_list("x-request-id")) == 1 and r.headers["x-request-id"]  # refusals too
        if r.status_code == 503:
            assert r.json()["error"] == "overloaded" and r.headers["retry-after"] == "1"
            refusals.add("ingress" if f"limit of {INGRESS_LIMIT} requests" in r.json()["message"] else "model queue")
        else:
            assert r.json()["predictions"][0]["class_id"] == 0
    # Both kinds of refusal happened: the ingress's own limit and the Classifier's full queue (Serve's
    # BackPressureError in the ingress), and both reached the client as the same JSON.
    assert refusals == {"ingress", "model queue"}, refusals
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)
    assert httpx.get(small_server + "/healthz").status_code == 200


def test_a_request_past_its_deadline_gets_504_json(small_server, assets):
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    headers = {"content-type": "image/jpeg", "x-request-timeout": "0.001"}
    late = httpx.post(small_server + "/v1/classify", content=photo, headers=headers, timeout=60)
    assert late.status_code == 504 and late.json()["error"] == "deadline_exceeded", late.text
    bad = httpx.post(small_server + "/v1/classify", content=photo, headers={**headers, "x-request-timeout": "soon"})
    assert bad.status_code == 422 and "X-Request-Timeout" in bad.json()["message"]
    ok = httpx.post(small_server + "/v1/classify", content=photo, headers={**headers, "x-request-timeout": "20"},
                    timeout=60)
    assert ok.status_code == 200


def _models(url: str) -> dict:
    return httpx.get(url + "/v1/models", timeout=10).json()


def _replica(url: str, role: str) -> dict:
    """The pid and items in flight of ``role``'s replica, from /v1/models ({} while it is down)."""
    try:
        models = {m["name"]: m for m in _models(url)["models"]}
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return (models.get(role, {}).get("info") or {}).get("replica", {})


def _group_photo(assets, side: int = 4) -> bytes:
    """``side`` x ``side`` copies of one portrait: a request whose landmark call carries 16 faces."""
    face = Image.open(assets / "faces/obama.jpg").convert("RGB")
    face.thumbnail((240, 240))
    canvas = Image.new("RGB", (face.width * side, face.height * side))
    for k in range(side * side):
        canvas.paste(face, ((k % side) * face.width, (k // side) * face.height))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_a_model_replica_killed_under_load_fails_no_request(small_server, assets):
    """SIGKILL the LandmarkModel replica while it holds requests: every request answers 200, because the
    ingress sends a call whose replica died once more (pipelines/model_calls.py)."""
    photo = _group_photo(assets)
    first = httpx.post(small_server + "/v1/faces", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
    assert first.status_code == 200, first.text
    faces = len(first.json()["faces"])
    assert faces >= 8, faces
    victim = _replica(small_server, "landmarks").get("pid")
    assert victim, "no LandmarkModel replica pid in /v1/models"
    answers: list[tuple[int, int]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                r = c.post(small_server + "/v1/faces", content=photo, headers={"content-type": "image/jpeg"})
                answers.append((r.status_code, len(r.json().get("faces", []))))

    threads = [threading.Thread(target=client) for _ in range(2 * INGRESS_LIMIT - 2)]
    for t in threads:
        t.start()
    try:
        held, deadline = 0, time.monotonic() + 60
        while held < 2 and time.monotonic() < deadline:  # kill it while it holds requests
            held = _replica(small_server, "landmarks").get("in_flight", 0)
        assert held >= 2, "the replica never held 2 requests at once"
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            new = _replica(small_server, "landmarks").get("pid")
            if new and new != victim:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no new LandmarkModel replica within 90 s")
        served = len(answers)
        while len(answers) < served + 10:  # the new replica answers too
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert answers and all(a == (200, faces) for a in answers), [a for a in answers if a != (200, faces)][:5]
    retried = {}
    for _ in range(20):  # two ingress replicas: collect each one's counters
        ingress = _models(small_server)["ingress"]
        retried[ingress["pid"]] = ingress["model_calls"]["retried"].get("landmarks", 0)
    print(f"killed the LandmarkModel holding {held} calls; retried by the ingress replicas: {retried}")
    # Whether a call was in the replica at the instant of the kill is a race (3 retries in the checked run,
    # 0 in a loaded CI run); every request answering 200 is the guarantee, the count is reported.


@contextlib.contextmanager
def _front_door(inner_url: str):
    """make run's front door (lensgraph/front_door.py) in front of the small app; yields its URL."""
    port = free_port()
    cfg = Path(tempfile.mkdtemp()) / "front_door.cfg"
    cfg.write_text(front_door.render("127.0.0.1", port, int(inner_url.rsplit(":", 1)[1]), 2 * INGRESS_LIMIT))
    proc = subprocess.Popen([str(front_door.haproxy_binary()), "-db", "-f", str(cfg)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def test_an_ingress_replica_killed_while_it_holds_requests_fails_none_through_the_front_door(small_server, assets):
    """SIGKILL one of the two ingress replicas while it holds photo requests: Serve's HAProxy answers each
    held request with a bare 500 (or drops it), and make run's front door, which holds every request whole,
    sends it once more; Serve routes that to the surviving replica, so every request answers 200 (without
    the front door the held requests fail: docs/benchmarks/faults.md)."""
    photo = _group_photo(assets)
    answers: list[int] = []
    stop = threading.Event()
    with _front_door(small_server) as door:
        def client() -> None:
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    try:
                        r = c.post(door + "/v1/faces", content=photo, headers={"content-type": "image/jpeg"})
                        answers.append(r.status_code)
                        if r.status_code != 200:
                            print("failed:", r.status_code, r.headers, r.text[:300])
                    except httpx.HTTPError as exc:  # a dropped connection is a failed request
                        answers.append(-1)
                        print("dropped:", exc)

        # as many clients as one replica admits: the survivor takes them all without refusing any
        threads = [threading.Thread(target=client) for _ in range(INGRESS_LIMIT)]
        for t in threads:
            t.start()
        try:
            victim, held, deadline = None, 0, time.monotonic() + 60
            while time.monotonic() < deadline:  # /v1/models answers from either replica, with its own count
                ingress = _models(door)["ingress"]
                if ingress["in_flight"] >= 2:  # admitted requests (/v1/models is not counted)
                    victim, held = ingress["pid"], ingress["in_flight"]
                    break
            assert victim, "no ingress replica held two requests at once"
            os.kill(victim, signal.SIGKILL)
            served = len(answers)
            deadline = time.monotonic() + 60
            while len(answers) < served + 20 and time.monotonic() < deadline:  # the surviving replica answers
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
    failed = [a for a in answers if a != 200]
    print(f"killed the ingress replica holding {held} requests; {len(answers)} answers, failed: {failed}")
    assert answers and not failed, failed


def test_serve_deploy_of_a_changed_config_under_load_fails_no_request(small_app, assets):
    """`serve deploy` of new batch sizes, thresholds, limits and replica counts while clients send
    requests: every request answers 200, and the replicas then report the new settings (the numbers
    under heavier load: docs/benchmarks/faults.md)."""
    url = small_app.url
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    config = yaml.safe_load(small_app.config.read_text())
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    deployments["DigitClassifier"]["num_replicas"] = 2
    deployments["DigitClassifier"]["user_config"]["max_batch_size"] = 8
    deployments["FaceDetector"]["user_config"]["score_threshold"] = 0.8
    deployments["Preprocessor"]["user_config"]["max_in_flight"] = INGRESS_LIMIT + 2
    changed = small_app.config.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    answers: list[int] = []
    stop = threading.Event()

    def client(route: str, body: bytes, content_type: str) -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                answers.append(c.post(url + route, content=body, headers={"content-type": content_type}).status_code)

    threads = [threading.Thread(target=client, args=("/v1/classify", photo, "image/jpeg")),
               threading.Thread(target=client, args=("/v1/digits", (assets / "faces/obama.jpg").read_bytes(), "image/jpeg"))]
    for t in threads:
        t.start()
    try:
        while len(answers) < 10:
            time.sleep(0.05)
        small_app.cluster.deploy(changed)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = [r for r in small_app.cluster.replicas().get("DigitClassifier", []) if r.get("state") == "RUNNING"]
            if len(running) == 2 and small_app.cluster.status()["applications"]["lensgraph"]["status"] == "RUNNING":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the changed config did not reach RUNNING with 2 DigitClassifier replicas")
        served = len(answers)
        while len(answers) < served + 10:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert answers and set(answers) == {200}, {s: answers.count(s) for s in set(answers)}
    models = {m["name"]: m["info"] for m in _models(url)["models"]}
    assert models["digits"]["batching"]["max_batch_size"] == 8
    assert _models(url)["ingress"]["settings"]["max_in_flight"] == INGRESS_LIMIT + 2
