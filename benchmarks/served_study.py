"""The served half of the optimisation study: where time goes per stage, memory per replica, a
py-spy flame graph, and the batching settings swept on the live application.

    python -m benchmarks.served_study [--seconds 15]     # or: make benchmark-served

One private Ray cluster with serve_config.yaml and configs/serve.env, as `make run` starts it.
- Per stage: Ray Serve's own metric ``ray_serve_deployment_processing_latency_ms`` (scraped from
  the head's Prometheus endpoint before and after each load) gives each deployment's mean time per
  request it handled; with the client's end-to-end latency the rest is transport and queueing.
- Memory: PSS of every process of the cluster, by role (each replica, controller, proxy, Ray's own).
- Flame graphs: py-spy on the Classifier and Preprocessor replicas during classify load (SVG).
- Batching: the Classifier's and DigitClassifier's max_batch_size x batch_wait_timeout_s,
  changed live with `serve deploy` (user_config), at 32 concurrent connections.
Writes docs/benchmarks/served_study.{json,md} and the SVGs; sizing numbers feed docs/deploy.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path


from benchmarks.compare import HOST, machine
from benchmarks.loadgen import build_request, run_load
from benchmarks.process_stats import pss_by_role
from benchmarks.systems import private_cluster, wait_http
from benchmarks.workloads import load
from lensgraph import settings

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ray_serve_deployment_processing_latency_ms"
SWEEP = {
    "Classifier": ("classify", [(1, 0.0), (4, 0.004), (8, 0.004), (16, 0.004), (16, 0.02), (32, 0.004)]),
    "DigitClassifier": ("digits", [(1, 0.0), (8, 0.004), (32, 0.004), (32, 0.02), (64, 0.004)]),
}


def scrape(port: int) -> dict[str, tuple[float, float]]:
    """deployment -> (sum of processing ms, count) from the head's Prometheus text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        if not line.startswith(METRIC + "_sum") and not line.startswith(METRIC + "_count"):
            continue
        match = re.search(r'deployment="([^"]+)"', line)
        if match:
            out[match.group(1)][0 if "_sum" in line.split("{")[0] else 1] += float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def settled_scrape(port: int, wait: float = 15.0) -> dict[str, tuple[float, float]]:
    """Metrics reach the endpoint with a delay (Ray's export interval): after ``wait`` seconds of
    quiet, scrape until two scrapes 5 s apart agree."""
    time.sleep(wait)
    previous, deadline = scrape(port), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(5)
        current = scrape(port)
        if current == previous:
            return current
        previous = current
    return previous


def memory_by_role(roots: list[int]) -> dict[str, dict]:
    """PSS and RSS per role (benchmarks.process_stats), with the pids: the flame graphs need them."""
    return {k: {**v, "pss_mb": round(v["pss_mb"], 1), "rss_mb": round(v["rss_mb"], 1)}
            for k, v in sorted(pss_by_role(roots).items())}


def flame(pid: int, seconds: float, out: Path) -> str | None:
    spy = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
    done = subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
                           "--format", "flamegraph", "--output", str(out), "--nonblocking"],
                          capture_output=True, text=True, timeout=seconds + 60)
    return None if done.returncode == 0 else (done.stderr or done.stdout)[-500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    assets = settings.assets_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    workloads = {p: load(p, assets) for p in ("classify", "faces", "digits")}
    cluster, port, base_config = private_cluster()
    work = base_config.parent
    result: dict = {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": "python -m benchmarks.served_study", "seconds": args.seconds,
                    "concurrency": args.concurrency, "stages": {}, "memory": {}, "sweep": [], "flame": {}}
    try:
        cluster.start_head()
        cluster.deploy(base_config)
        cluster.wait_running()
        wait_http(f"http://{HOST}:{port}/readyz", 120)
        roots = [n.process.pid for n in cluster.nodes]
        result["memory"]["idle"] = memory_by_role(roots)

        def requests_for(pipeline: str) -> list[bytes]:
            w = workloads[pipeline]
            return [build_request(HOST, port, w.path, body, w.content_type) for body in w.images]

        # 1. per-stage time, and 2. flame graphs during classify
        for pipeline in ("classify", "faces", "digits"):
            requests = requests_for(pipeline)
            run_load(HOST, port, requests, args.concurrency, 3, warmup_s=0)
            before = settled_scrape(cluster.metrics_port)
            load_result = run_load(HOST, port, requests, args.concurrency, args.seconds, warmup_s=0)
            after = settled_scrape(cluster.metrics_port)
            stages = {}
            for deployment, (total, count) in after.items():
                d_total, d_count = total - before.get(deployment, (0, 0))[0], count - before.get(deployment, (0, 0))[1]
                if d_count > 0:
                    stages[deployment] = {"calls": int(d_count), "mean_ms": round(d_total / d_count, 2),
                                          "calls_per_request": round(d_count / max(1, load_result.completed), 2)}
            result["stages"][pipeline] = {"client": load_result.summary(), "deployments": stages}
            print(pipeline, json.dumps(result["stages"][pipeline]), flush=True)
        result["memory"]["after_load"] = memory_by_role(roots)
        memory = result["memory"]["after_load"]
        for deployment in ("Classifier", "Preprocessor"):
            pids = memory.get(f"replica: {deployment}", {}).get("pids", [])
            if not pids:
                continue
            svg = args.out / f"flame_{deployment.lower()}.svg"
            import threading

            errors: list = []
            spy = threading.Thread(target=lambda: errors.append(flame(pids[0], args.seconds, svg)))
            spy.start()
            run_load(HOST, port, requests_for("classify"), args.concurrency, args.seconds + 2, warmup_s=0)
            spy.join()
            result["flame"][deployment] = svg.name if errors and errors[0] is None else f"failed: {errors}"
        # 3. batching sweep, live through user_config
        import yaml

        for deployment, (pipeline, grid) in SWEEP.items():
            requests = requests_for(pipeline)
            for size, wait in grid:
                config = yaml.safe_load(base_config.read_text())
                for d in config["applications"][0]["deployments"]:
                    if d["name"] == deployment:
                        d["user_config"] = {**d.get("user_config", {}), "max_batch_size": size,
                                            "batch_wait_timeout_s": wait}
                swept = work / f"sweep_{deployment}_{size}_{wait}.yaml"
                swept.write_text(yaml.safe_dump(config, sort_keys=False))
                cluster.deploy(swept)
                cluster.wait_running()
                time.sleep(2)
                run_load(HOST, port, requests, args.concurrency, 3, warmup_s=0)
                r = run_load(HOST, port, requests, args.concurrency, args.seconds, warmup_s=0)
                row = {"deployment": deployment, "pipeline": pipeline, "max_batch_size": size,
                       "batch_wait_timeout_s": wait, **r.summary()}
                print(json.dumps(row), flush=True)
                result["sweep"].append(row)
    finally:
        cluster.stop()
    for snapshot in result["memory"].values():
        for v in snapshot.values():
            v.pop("pids", None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "served_study.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, args.out / "served_study.md")


def write_markdown(result: dict, path: Path) -> None:
    lines = ["# Served study: time per stage, memory per replica, batching", "",
             f"Reproduce: `{result['command']}` ({result['seconds']:g} s per point, {result['concurrency']} "
             f"connections). Measured {result['date']} on {result['machine']}.", "",
             "## Where the time goes", "",
             "Mean processing time per call of each deployment (Ray Serve's `" + METRIC + "`), against the "
             "client's end-to-end latency at the same load. Processing time of a model deployment includes the "
             "wait for its batch to fill and for the inference thread; the ingress's includes everything downstream.",
             ""]
    for pipeline, data in result["stages"].items():
        c = data["client"]
        lines += [f"### {pipeline}: {c['throughput_rps']} req/s, client p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms", "",
                  "| deployment | calls per request | mean ms per call |", "|---|---:|---:|"]
        for deployment, s in sorted(data["deployments"].items(), key=lambda kv: -kv[1]["mean_ms"]):
            lines.append(f"| {deployment} | {s['calls_per_request']} | {s['mean_ms']} |")
        lines.append("")
    lines += ["## Memory per process role (PSS, MiB)", "",
              "PSS divides shared pages among the processes sharing them, so the column sums to the cluster's "
              "footprint. *idle*: after start-up; *after load*: after the three pipelines ran.", "",
              "| role | processes | idle PSS | after load PSS | after load RSS |", "|---|---:|---:|---:|---:|"]
    idle, after = result["memory"].get("idle", {}), result["memory"].get("after_load", {})
    for r in sorted(set(idle) | set(after)):
        a, i = after.get(r, {}), idle.get(r, {})
        lines.append(f"| {r} | {a.get('processes', i.get('processes', ''))} | {i.get('pss_mb', '')} | "
                     f"{a.get('pss_mb', '')} | {a.get('rss_mb', '')} |")
    total_idle = sum(v["pss_mb"] for v in idle.values())
    total_after = sum(v["pss_mb"] for v in after.values())
    lines += [f"| **total** | | {total_idle:.0f} | {total_after:.0f} | |", ""]
    if result["flame"]:
        lines += ["## Flame graphs (py-spy, classify load)", ""]
        lines += [f"- {d}: [{v}]({v})" if v.endswith(".svg") else f"- {d}: {v}" for d, v in result["flame"].items()]
        lines.append("")
    if result["sweep"]:
        lines += ["## Batching, changed live", "", "| deployment | max_batch_size | batch_wait_timeout_s | req/s | p50 ms | p99 ms | failures |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in result["sweep"]:
            lines.append(f"| {r['deployment']} | {r['max_batch_size']} | {r['batch_wait_timeout_s']} | "
                         f"{r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['failures']} |")
        lines.append("")
    path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
