"""API keys and the rate limit on a real app (docs/security.md): the key file reaches the replicas through
the environment as with `make run`, requests go through Serve's HAProxy to the ingress, and the
answers are the API's JSON errors. One cluster for everything here."""

from __future__ import annotations

import httpx
import pytest

from lensgraph import web
from lensgraph.security import keys
from tests.integration.conftest import running_server

pytestmark = pytest.mark.serve
BURST = 4
# One ingress replica: rate limits are per replica, so with one the burst is exact.
INGRESS = {"Preprocessor": {"num_replicas": 1, "user_config": {"decode_threads": 1, "max_in_flight": 32,
                                            "rate_limit_per_s": 0.05, "rate_limit_burst": BURST}}}


@pytest.fixture(scope="module")
def secured(repository, assets, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("secured")
    key_file = workdir / "api_keys"
    key, other = keys.append(key_file, "tests"), keys.append(key_file, "other")
    with running_server(repository, assets, workdir, overrides=INGRESS, env={keys.ENV: str(key_file)}) as server:
        yield server, key, other


def _classify(url: str, photo: bytes, key: str | None = None, raw_header: str | None = None) -> httpx.Response:
    headers = {"content-type": "image/jpeg"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    if raw_header is not None:
        headers["authorization"] = raw_header
    return httpx.post(url + "/v1/classify", content=photo, headers=headers, timeout=60)


def test_keys_and_rate_limit_on_a_real_app(secured, assets):
    server, key, other = secured
    url = server.url
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()

    missing = _classify(url, photo)
    assert missing.status_code == 401, missing.text
    assert missing.headers["content-type"] == "application/json"
    assert missing.json()["error"] == "unauthorized" and missing.headers["www-authenticate"].startswith("Bearer")
    assert _classify(url, photo, raw_header="Basic dGVzdDp0ZXN0").status_code == 401
    wrong = _classify(url, photo, keys.new_key())
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden", wrong.text
    assert httpx.get(url + "/v1/models", timeout=30).status_code == 401, "/v1/models needs a key too"

    for _ in range(10):  # probes: open, and never rate limited
        assert httpx.get(url + "/healthz", timeout=30).json()["status"] == "ok"
    assert httpx.get(url + "/readyz", timeout=30).status_code == 200
    assert httpx.get(url + "/openapi.json", timeout=30).status_code == 200
    for path in web.PAGE_PATHS:  # the web page is open (no data); the API calls it makes need the key
        assert httpx.get(url + path, timeout=30).status_code == 200, path

    ok = _classify(url, photo, key)
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"][0]["class_id"] == 0  # the tench, from the real model
    models = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert models.status_code == 200
    assert models.json()["ingress"]["settings"]["rate_limit_burst"] == BURST, "the user_config reached the replica"

    # 2 of the burst are spent (classify, /v1/models); at 0.05/s the next token is 20 s away
    answers = [_classify(url, photo, key) for _ in range(BURST)]
    statuses = [r.status_code for r in answers]
    assert statuses == [200] * (BURST - 2) + [429] * 2, statuses
    limited = answers[-1]
    assert limited.headers["content-type"] == "application/json"
    assert limited.json()["error"] == "rate_limited" and "API key" in limited.json()["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert _classify(url, photo, other).status_code == 200, "another key has its own bucket"
    assert httpx.get(url + "/healthz", timeout=30).status_code == 200

    logs = server.cluster.workdir / "ray"
    texts = [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".err")]
    assert texts, f"no Ray logs under {logs}"
    assert not any(key in t or other in t for t in texts), "an API key was written to a log"


@pytest.fixture(scope="module")
def limited_by_address(repository, assets, tmp_path_factory):
    """Keys off, a rate limit per client address, as `make run` would run it with rate_limit_per_s set."""
    overrides = {"Preprocessor": {"num_replicas": 1, "user_config": {"decode_threads": 1, "max_in_flight": 32,
                                                                     "rate_limit_per_s": 0.05, "rate_limit_burst": 2}}}
    with running_server(repository, assets, tmp_path_factory.mktemp("by_address"), overrides=overrides) as server:
        yield server


def test_a_client_cannot_pick_its_rate_limit_bucket_with_x_forwarded_for(limited_by_address, assets):
    """uvicorn believes X-Forwarded-For from 127.0.0.1, and Serve's HAProxy connects from 127.0.0.1
    without setting it: unless FORWARDED_ALLOW_IPS is empty (configs/serve.env), every request could
    name its own client address and so its own fresh bucket."""
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    statuses = []
    for k in range(4):
        r = httpx.post(limited_by_address.url + "/v1/classify", content=photo, timeout=60,
                       headers={"content-type": "image/jpeg", "x-forwarded-for": f"203.0.113.{k + 1}"})
        statuses.append(r.status_code)
    assert statuses == [200, 200, 429, 429], statuses
