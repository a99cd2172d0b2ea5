"""Plain `serve run serve_config.yaml` (Ray's convention) without configs/serve.env: Serve's default
process settings (no throughput mode, no HAProxy, gRPC's default message limit). Same answers, and
the same 413 JSON for an oversized upload: uploads never travel between replicas."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import check_large_uploads, running_server

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def plain_server(repository, assets, tmp_path_factory):
    with running_server(repository, assets, tmp_path_factory.mktemp("plain"), with_serve_env=False) as server:
        yield server.url


def test_plain_serve_answers_as_with_serve_env(plain_server, assets):
    photo = (assets / "imagenet/n01667114_mud_turtle.JPEG").read_bytes()
    body = httpx.post(plain_server + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"},
                      timeout=60).json()
    assert body["predictions"][0]["class_id"] == 35
    faces = httpx.post(plain_server + "/v1/faces", files={"file": ("g.jpg", (assets / "face_detector/linzaer_imgs_2.jpg")
                                                                  .read_bytes())}, timeout=60).json()
    assert len(faces["faces"]) == 4 and all(len(f["landmarks"]) == 15 for f in faces["faces"])


def test_plain_serve_takes_large_uploads_and_refuses_oversized_ones_with_json(plain_server):
    check_large_uploads(plain_server)


def test_plain_serve_sends_one_request_id_and_honours_the_clients(plain_server):
    """Serve's Python proxy (not the replica) adds X-Request-ID here: once, and the client's when sent."""
    bad = httpx.post(plain_server + "/v1/classify", content=b"not an image", headers={"content-type": "image/png"})
    assert bad.status_code == 415 and bad.json()["error"] == "unsupported_media_type"
    assert len(bad.headers.get_list("x-request-id")) == 1 and bad.headers["x-request-id"]
    mine = httpx.get(plain_server + "/healthz", headers={"x-request-id": "plain-serve-1"})
    assert mine.headers.get_list("x-request-id") == ["plain-serve-1"]
