"""Measure Ray Serve's throughput settings on the real pipelines, on this machine.

For each setting the whole application is started on a private Ray cluster (the same way the
tests do), then /v1/classify and /v1/faces are driven with the low-overhead load generator.

    python -m benchmarks.serve_settings            # writes docs/benchmarks/serve_settings.{json,md}

Needs a built model repository ($LENSGRAPH_MODEL_REPOSITORY) and $LENSGRAPH_ASSETS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.loadgen import build_request, run_load
from lensgraph import serve_env, settings
from lensgraph.devcluster import LocalCluster, free_port, serve_config_for_test

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY")
SETTINGS = {
    "serve-defaults": {"env": {}, "access_log": True},
    "defaults-no-access-log": {"env": {}, "access_log": False},
    "throughput-optimized": {"env": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, "access_log": False},
    "throughput-optimized+haproxy (chosen)": {
        "env": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}, "access_log": False},
}
ROUTES = {
    "classify": ("/v1/classify", "imagenet/n01440764_tench.JPEG"),
    "faces": ("/v1/faces", "face_detector/linzaer_imgs_2.jpg"),
}


def measure(name: str, setting: dict, concurrency: int, seconds: float) -> list[dict]:
    base_env = {k: v for k, v in serve_env.load().items() if k not in FLAGS}
    env = {**base_env, **setting["env"], "LENSGRAPH_MODEL_REPOSITORY": str(settings.model_repository_dir())}
    for flag in FLAGS:  # an inherited flag would blur the comparison
        os.environ.pop(flag, None)
    cluster = LocalCluster(head_cpus=2, env=env)
    port = free_port()
    work = Path(tempfile.mkdtemp())
    config = serve_config_for_test(ROOT / "serve_config.yaml", work / "serve.yaml", port)
    if setting["access_log"]:
        import yaml

        raw = yaml.safe_load(config.read_text())
        raw["logging_config"]["enable_access_log"] = True
        config.write_text(yaml.safe_dump(raw))
    rows = []
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running()
        deadline = time.monotonic() + 60
        while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("not ready")
            time.sleep(0.5)
        assets = settings.assets_dir()
        for route, (path, image) in ROUTES.items():
            body = (assets / image).read_bytes()
            request = build_request("127.0.0.1", port, path, body, "image/jpeg")
            result = run_load("127.0.0.1", port, [request], concurrency, seconds, warmup_s=3)
            row = {"setting": name, "route": route, **result.summary()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    rows = []
    for name, setting in SETTINGS.items():
        rows += measure(name, setting, args.concurrency, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
            "command": "python -m benchmarks.serve_settings " + f"--concurrency {args.concurrency} --seconds {args.seconds:g}"}
    (args.out / "serve_settings.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    lines = [f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}` "
             f"(closed loop, {args.concurrency} connections, {args.seconds:g} s per route after 3 s warm-up).", "",
             "| setting | route | req/s | p50 ms | p99 ms | failures | client CPU share |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['route']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['failures']} | {r['client_cpu_share']} |")
    (args.out / "serve_settings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
