"""Issue 11, bad input beyond what we thought of, on a real app: the API fuzzed from its own OpenAPI schema,
hostile files (tests/trap_files.py) through HTTP, and the request id that ties an answer to its log line.

``LENSGRAPH_FUZZ_EXAMPLES`` (default 50) sets the schema-valid cases per operation; ``LENSGRAPH_FUZZ_URL``
fuzzes a server that is already running instead of starting one (``make fuzz``).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.fuzzing import fuzz, small_jpeg
from tests.trap_files import TRAPS

pytestmark = pytest.mark.serve

EXAMPLES = int(os.environ.get("LENSGRAPH_FUZZ_EXAMPLES", "50"))
MIN_CASES = 50  # per operation, whatever EXAMPLES says: a route that got fewer was not fuzzed
IMAGE_ROUTES = ("/v1/classify", "/v1/faces", "/v1/landmarks", "/v1/digits")


@pytest.fixture(scope="module")
def target(request) -> str:
    url = os.environ.get("LENSGRAPH_FUZZ_URL")
    return url.rstrip("/") if url else request.getfixturevalue("server").url


def test_fuzz_every_route_from_the_openapi_schema(target):
    spec = httpx.get(target + "/openapi.json", timeout=30).json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    for path in IMAGE_ROUTES:
        body = spec["paths"][path]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "image/*", "application/json"} <= set(body), path

    report = fuzz(target, max(EXAMPLES, MIN_CASES), small_jpeg())

    print("\n" + report.summary())
    fuzzed = {tuple(label.split(" ", 1)) for label in report.cases}
    assert fuzzed == routes, f"not fuzzed: {routes - fuzzed}"
    few = {label: n for label, n in report.cases.items() if n < MIN_CASES}
    assert not few, f"operations with fewer than {MIN_CASES} cases: {few}"
    for path in IMAGE_ROUTES:
        assert report.statuses[(f"POST {path}", 200)] > 0, f"no case reached the model on {path}"
        declared = set(spec["paths"][path]["post"]["requestBody"]["content"])
        sent = {"image/*" if media.startswith("image/") else media  # schemathesis picks image/png, image/gif, ...
                for (label, media) in report.media if label == f"POST {path}"}
        assert declared <= sent, f"{path}: no body of {declared - sent}"
    assert not report.failures, f"{len(report.failures)} kinds of failure:\n" + "\n".join(report.failures)
    assert httpx.get(target + "/readyz", timeout=30).status_code == 200  # still serving


# -- real-file traps ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRAPS))
def test_each_trap_is_answered_or_refused_with_json_through_http(server, name):
    maker, expected = TRAPS[name]
    data = maker()
    response = httpx.post(server.url + "/v1/classify", content=data,
                          headers={"content-type": "application/octet-stream"}, timeout=120)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    if expected == "ok":
        assert response.status_code == 200, body
        assert len(body["predictions"]) == 2
    else:
        assert 400 <= response.status_code < 500 and body["error"] == expected, body
        assert len(body["message"]) > 40


def test_traps_as_multipart_on_faces_and_the_service_keeps_serving(server, assets):
    for name in ("png_giant_ztxt", "exif_bomb", "gif_many_frames", "progressive_jpeg_60000x60000"):
        maker, expected = TRAPS[name]
        response = httpx.post(server.url + "/v1/faces", files={"file": (f"{name}.bin", maker())}, timeout=120)
        if expected == "ok":
            assert response.status_code == 200 and "faces" in response.json(), response.text
        else:
            assert 400 <= response.status_code < 500 and response.json()["error"] == expected, response.text
    photo = (assets / "faces/obama.jpg").read_bytes()
    response = httpx.post(server.url + "/v1/faces", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200 and len(response.json()["faces"]) == 1


def test_deeply_nested_json_is_a_422_not_a_500(server):
    nested = b"[" * 100_000 + b"]" * 100_000  # past the JSON parser's recursion limit
    response = httpx.post(server.url + "/v1/digits", content=nested, headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request", response.text


# -- request ids and the log ---------------------------------------------------------------------


def _replica_logs(server) -> list[Path]:
    """The ingress replicas' log files (Serve writes them under the Ray session of the test cluster)."""
    return sorted((server.cluster.workdir / "ray").glob("session_*/logs/serve/replica_*Preprocessor*.log"))


def _lines_with(server, needle: str, wait_s: float = 30) -> tuple[list[str], list[str]]:
    """(lines containing ``needle``, all lines of the file that has them), waiting for the line to be written."""
    deadline = time.monotonic() + wait_s
    while True:
        for path in _replica_logs(server):
            lines = path.read_text(errors="replace").splitlines()
            found = [line for line in lines if needle in line]
            if found or time.monotonic() > deadline:
                if found:
                    return found, lines
        if time.monotonic() > deadline:
            return [], []
        time.sleep(0.5)


def _truncated_jpeg(assets) -> bytes:
    return (assets / "faces/obama.jpg").read_bytes()[:20000]


def test_a_truncated_upload_logs_one_line_with_its_request_id_and_no_traceback(server, assets):
    response = httpx.post(server.url + "/v1/faces", content=_truncated_jpeg(assets),
                          headers={"content-type": "image/jpeg"}, timeout=60)
    assert response.status_code == 422 and response.json()["error"] == "undecodable_image"
    assert len(response.headers.get_list("x-request-id")) == 1
    rid = response.headers["x-request-id"]
    assert len(rid) >= 8
    assert _replica_logs(server), "no Preprocessor replica log"
    found, lines = _lines_with(server, rid)
    assert len(found) == 1, found
    assert f"422 undecodable_image request_id={rid}" in found[0] and "POST /v1/faces" in found[0]
    at = lines.index(found[0])
    assert not any("Traceback" in line for line in lines[at:at + 20]), lines[at:at + 20]


def test_a_client_request_id_is_honoured_in_the_answer_and_the_log(server, assets):
    rid = f"client-{uuid.uuid4()}"
    response = httpx.post(server.url + "/v1/classify", content=_truncated_jpeg(assets),
                          headers={"content-type": "image/jpeg", "x-request-id": rid}, timeout=60)
    assert response.status_code == 422 and response.headers.get_list("x-request-id") == [rid]
    found, _ = _lines_with(server, rid)
    assert len(found) == 1 and f"422 undecodable_image request_id={rid}" in found[0], found
    ok = httpx.get(server.url + "/healthz", headers={"x-request-id": rid + "-ok"})
    assert ok.headers.get_list("x-request-id") == [rid + "-ok"]  # successes carry it too, and log nothing
    assert _lines_with(server, rid + "-ok", wait_s=0)[0] == []
