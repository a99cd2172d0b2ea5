"""The served systems of the benchmark, each started fresh and stopped with its whole process tree.

- ``lensgraph``: serve_config.yaml on a private Ray cluster with configs/serve.env (the chosen
  settings), exactly as the tests and ``make run`` start it.
- ``lensgraph-serve-defaults``: the same application with Ray Serve's default process settings
  (no throughput-optimised mode, no HAProxy; access log off in both so only the flags differ).
- ``baseline-fastapi``: benchmarks/baseline_app.py, one uvicorn process.
- ``bentoml``, ``triton``: the peers (benchmarks/peers), classify only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from lensgraph import serve_env, settings
from lensgraph.devcluster import LocalCluster, descendants, free_port, kill_all, serve_config_for_test

ROOT = Path(__file__).resolve().parents[1]
SERVE_FLAGS = ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY")


@dataclass
class Running:
    system: str
    port: int
    roots: list[int]  # process-tree roots, for CPU and memory accounting
    pipelines: tuple[str, ...]
    request_for: object = None  # peers: (host, port, image bytes) -> raw HTTP request; None = lensgraph's API


def wait_http(url: str, timeout: float, ok=lambda r: r.status_code == 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=5)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


def private_cluster(source: Path = ROOT / "serve_config.yaml", overrides: dict | None = None,
                    head_cpus: float = 2, optimized: bool = True, env_changes: dict[str, str | None] | None = None
                    ) -> tuple[LocalCluster, int, Path]:
    """A private Ray cluster (not yet started) with Serve's process environment, and a copy of the
    serve config ``source`` bound to a free port with per-deployment ``overrides``.

    ``optimized=False`` leaves out the throughput flags of configs/serve.env; an inherited flag in
    this process's environment is dropped either way, so it cannot blur a comparison. ``env_changes``
    (experiments) sets variables of configs/serve.env to other values, or drops those given as None."""
    env = {k: v for k, v in serve_env.load().items() if optimized or k not in SERVE_FLAGS}
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
            os.environ.pop(key, None)
        else:
            env[key] = str(value)
    env["LENSGRAPH_MODEL_REPOSITORY"] = str(settings.model_repository_dir())
    for flag in SERVE_FLAGS:
        os.environ.pop(flag, None)
    port = free_port()
    config = serve_config_for_test(source, Path(tempfile.mkdtemp()) / "serve.yaml", port, overrides)
    return LocalCluster(head_cpus=head_cpus, env=env), port, config


@contextlib.contextmanager
def lensgraph(optimized: bool = True, overrides: dict | None = None) -> Iterator[Running]:
    """``overrides``: per-deployment fields replacing serve_config.yaml's (experiments)."""
    cluster, port, config = private_cluster(overrides=overrides, optimized=optimized)
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running()
        wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        name = "lensgraph" if optimized else "lensgraph-serve-defaults"
        yield Running(name, port, [n.process.pid for n in cluster.nodes], ("classify", "faces", "digits"))
    finally:
        cluster.stop()


@contextlib.contextmanager
def subprocess_server(system: str, command: list[str], port: int, ready_url: str, pipelines: tuple[str, ...],
                      env: dict[str, str] | None = None, request_for=None, timeout: float = 180) -> Iterator[Running]:
    log = Path(tempfile.mkdtemp()) / f"{system}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_http(ready_url, timeout)
        except TimeoutError as exc:
            raise RuntimeError(f"{system} did not start: {exc}\n{log.read_text()[-3000:]}") from exc
        yield Running(system, port, [process.pid], pipelines, request_for)
    finally:
        tree = descendants([process.pid])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        kill_all(tree | {process.pid})


def baseline(threads: int = 2) -> contextlib.AbstractContextManager[Running]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.baseline_app", "--port", str(port), "--threads", str(threads)]
    return subprocess_server("baseline-fastapi", command, port, f"http://127.0.0.1:{port}/healthz",
                             ("classify", "faces", "digits"))
