"""A real lensgraph application on a private Ray cluster on 127.0.0.1, started once per module."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lensgraph import serve_env
from lensgraph.devcluster import LocalCluster, free_port, serve_config_for_test

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    cluster: LocalCluster
    config: Path

    def models(self) -> dict[str, dict]:
        body = httpx.get(self.url + "/v1/models", timeout=30).json()
        return {m["name"]: m for m in body["models"]}


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@contextmanager
def running_server(repository: Path, assets: Path, workdir: Path, with_serve_env: bool = True,
                   overrides: dict | None = None, env: dict[str, str] | None = None, edit=None,
                   head_cpus: float = 2) -> Iterator[Server]:
    """Deploy serve_config.yaml (on a free port) against ``repository``; tear the cluster down after.

    ``with_serve_env=False``: Serve's default process settings, as plain `serve run` has them (variables
    of configs/serve.env inherited from this process are dropped for the cluster's lifetime).
    ``env``: more variables for every Ray process (e.g. LENSGRAPH_API_KEYS_FILE), as `make run` would inherit them.
    ``edit``: a function that changes the parsed serve config (more served models); ``head_cpus``: logical CPUs."""
    inherited = {} if with_serve_env else {k: os.environ.pop(k) for k in serve_env.load() if k in os.environ}
    env = {**(serve_env.load() if with_serve_env else {}),
           "LENSGRAPH_MODEL_REPOSITORY": str(repository), "LENSGRAPH_ASSETS": str(assets), **(env or {})}
    cluster = LocalCluster(head_cpus=head_cpus, env=env)
    port = free_port()
    config = serve_config_for_test(ROOT / "serve_config.yaml", workdir / "serve.yaml", port, overrides, edit)
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running()
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield Server(url, cluster, config)
    finally:
        cluster.stop()
        os.environ.update(inherited)


@pytest.fixture(scope="module")
def server(repository: Path, assets: Path, tmp_path_factory) -> Iterator[Server]:
    with running_server(repository, assets, tmp_path_factory.mktemp("serve")) as running:
        yield running


def noise_png(min_bytes: int) -> bytes:
    """A valid, incompressible PNG of at least ``min_bytes``: above gRPC's default 4 MiB message limit
    when asked, so a route that passed the upload between replicas would fail on it."""
    import io

    import numpy as np
    from PIL import Image

    side = int((min_bytes / 3) ** 0.5) + 16
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    assert len(buffer.getvalue()) >= min_bytes
    return buffer.getvalue()


def check_large_uploads(url: str) -> None:
    """A valid 6 MB upload is answered on every route that decodes; 20 MB gets the 413 JSON, not a reset."""
    big = noise_png(6 * 1024 * 1024)
    for route in ("/v1/classify", "/v1/faces", "/v1/digits", "/v1/landmarks"):
        response = httpx.post(url + route, content=big, headers={"content-type": "image/png"}, timeout=120)
        assert response.status_code == 200, (route, response.text[:300])
    huge = b"\xff\xd8" + bytes(20 * 1024 * 1024)
    chunked = (huge[i : i + 2**20] for i in range(0, len(huge), 2**20))  # no Content-Length: read and cut off
    for content in (huge, chunked):
        response = httpx.post(url + "/v1/classify", content=content, headers={"content-type": "image/jpeg"}, timeout=120)
        assert response.status_code == 413, response.text[:300]
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "image_too_large"
