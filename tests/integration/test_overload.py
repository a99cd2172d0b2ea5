"""Overload and deadlines on a real app whose ingress admits only 2 requests at once: the rest are
refused at once with the 503 JSON and Retry-After, a request past its deadline gets the 504 JSON,
and the service keeps answering."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.conftest import running_server

pytestmark = pytest.mark.serve
INGRESS = {"Preprocessor": {"user_config": {"decode_threads": 0, "max_in_flight": 2, "request_timeout_s": 30}}}


@pytest.fixture(scope="module")
def small_server(repository, assets, tmp_path_factory):
    with running_server(repository, assets, tmp_path_factory.mktemp("small"), overrides=INGRESS) as server:
        yield server.url


async def _burst(url: str, body: bytes, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url, content=body, headers={"content-type": "image/jpeg"})
                                      for _ in range(n)))


def test_over_the_limit_is_refused_at_once_with_json_and_retry_after(small_server, assets):
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    responses = asyncio.run(_burst(small_server + "/v1/classify", photo, 40))
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 503], statuses
    for r in responses:
        assert r.headers["content-type"].startswith("application/json")
        if r.status_code == 503:
            assert r.json()["error"] == "overloaded" and r.headers["retry-after"] == "1"
        else:
            assert r.json()["predictions"][0]["class_id"] == 0
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
