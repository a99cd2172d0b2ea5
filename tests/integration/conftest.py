"""A real lensgraph application on a private Ray cluster on 127.0.0.1, started once per module."""

from __future__ import annotations

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
def running_server(repository: Path, assets: Path, workdir: Path) -> Iterator[Server]:
    """Deploy serve_config.yaml (on a free port) against ``repository``; tear the cluster down after."""
    env = {**serve_env.load(), "LENSGRAPH_MODEL_REPOSITORY": str(repository), "LENSGRAPH_ASSETS": str(assets)}
    cluster = LocalCluster(head_cpus=2, env=env)
    port = free_port()
    config = serve_config_for_test(ROOT / "serve_config.yaml", workdir / "serve.yaml", port)
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running()
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield Server(url, cluster, config)
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server(repository: Path, assets: Path, tmp_path_factory) -> Iterator[Server]:
    with running_server(repository, assets, tmp_path_factory.mktemp("serve")) as running:
        yield running
