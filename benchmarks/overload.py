"""Overload, open loop: classify and faces at 1x, 2x, 5x and 10x capacity. Does the service shed load
early and cheaply, and keep serving at capacity?

    python -m benchmarks.overload [--pipelines classify,faces] [--seconds 15] [--label NAME] [--override JSON]

Capacity is first estimated closed-loop (32 connections); the open-loop generator
(benchmarks/open_loop.py) then sends at 1x that rate, and the accepted req/s at 1x is the capacity
the other multiples are compared with. Per point: the status mix, client timeouts (30 s), accepted
req/s, p50/p99 of accepted and of refused requests, the generator's CPU, and the server's CPU per
refused request (server CPU in the window minus accepted x the 1x CPU per accepted, over the refused).
Writes docs/benchmarks/overload.{json,md}; labelled runs stay side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.compare import HOST, machine
from benchmarks.cpu_accounting import save_run, served_app
from benchmarks.loadgen import build_request, run_load
from benchmarks.open_loop import ERROR, TIMEOUT, run_open_loop
from benchmarks.process_stats import cpu_seconds
from benchmarks.workloads import load
from benchmarks.systems import wait_http
from lensgraph import front_door, front_door_limit, settings
from lensgraph.devcluster import free_port

ROOT = Path(__file__).resolve().parents[1]
MULTIPLES = (1, 2, 5, 10)


def measure(roots: list[int], port: int, pipeline: str, seconds: float) -> list[dict]:
    w = load(pipeline, settings.assets_dir())
    requests = [build_request(HOST, port, w.path, body, w.content_type) for body in w.images]
    estimate = run_load(HOST, port, requests, 32, 8, warmup_s=3).summary()["throughput_rps"]
    rows, per_accepted = [], None
    for multiple in MULTIPLES:
        rate = estimate * multiple
        cpu0 = cpu_seconds(roots)
        result = run_open_loop(HOST, port, requests, rate, seconds)
        cpu = cpu_seconds(roots) - cpu0
        accepted = result.statuses.get(200, 0)
        refused = sum(v for k, v in result.statuses.items() if k in (429, 503))
        if multiple == 1:
            per_accepted = cpu / max(1, accepted)
        row = {
            "pipeline": pipeline, "multiple": multiple, "rate": round(rate, 1), "sent": result.sent,
            "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            "timeouts": result.statuses.get(TIMEOUT, 0), "errors": result.statuses.get(ERROR, 0),
            "accepted_rps": round(accepted / seconds, 1),
            "accepted_p50_ms": result.percentiles(200)[0], "accepted_p99_ms": result.percentiles(200)[1],
            "refused_p50_ms": result.percentiles(503)[0], "refused_p99_ms": result.percentiles(503)[1],
            "client_cpu_share": round(result.client_cpu_s / seconds, 3),
            "server_cpu_ms_per_refused": round(1000 * (cpu - accepted * per_accepted) / refused, 2) if refused else None,
            "peak_connections": result.peak_connections,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    capacity = rows[0]["accepted_rps"]
    for row in rows:
        row["accepted_share_of_capacity"] = round(row["accepted_rps"] / capacity, 3) if capacity else None
    return rows


@contextlib.contextmanager
def front(inner_port: int, enabled: bool, latency_target_s: float = front_door_limit.DEFAULT_TARGET_S):
    """(port to load, extra processes to account): the front door in front of the app when enabled, with
    its limit following ``latency_target_s`` as in make run (0: a fixed limit)."""
    if not enabled:
        yield inner_port, []
        return
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())  # the limit make run's door has (no --override)
    port, workdir = free_port(), Path(tempfile.mkdtemp())
    sock = workdir / "front_door.sock" if latency_target_s > 0 else None
    (workdir / "front_door.cfg").write_text(
        front_door.render(HOST, port, inner_port, front_door.capacity(config), admin_socket=sock))
    proc = subprocess.Popen([str(front_door.haproxy_binary()), "-db", "-f", str(workdir / "front_door.cfg")])
    controller = front_door_limit.Controller(sock, front_door.capacity(config), latency_target_s) if sock else None
    try:
        wait_http(f"http://{HOST}:{port}/readyz", 30)
        if controller:
            controller.start()
        yield port, [proc.pid]
    finally:
        if controller:
            controller.stop()
        proc.kill()
        proc.wait()


def render(runs: dict[str, dict]) -> str:
    lines = ["# Overload, open loop", "",
             "Written by `python -m benchmarks.overload` (see its docstring). *capacity*: accepted req/s at 1x in the "
             "same run. Latency counts from the scheduled arrival. Refused: 503 `overloaded` JSON with `Retry-After`.", ""]
    for label, run in runs.items():
        lines += [f"## {label}", "", f"`{run['command']}`, {run['date']}, {run['machine']}.", "",
                  "| route | x capacity | sent/s | accepted req/s (share) | 200 / 503 / timeouts / errors | accepted p50 / p99 ms "
                  "| refused p50 / p99 ms | server CPU ms per refused | client CPU |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for r in run["rows"]:
            s = r["statuses"]
            lines.append(f"| {r['pipeline']} | {r['multiple']} | {r['rate']} | {r['accepted_rps']} "
                         f"({r['accepted_share_of_capacity']}) | {s.get('200', 0)} / {s.get('503', 0)} / {r['timeouts']} / "
                         f"{r['errors']} | {r['accepted_p50_ms']} / {r['accepted_p99_ms']} | {r['refused_p50_ms']} / "
                         f"{r['refused_p99_ms']} | {r['server_cpu_ms_per_refused']} | {r['client_cpu_share']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default="classify,faces")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--front-door", action="store_true",
                        help="through lensgraph run's front door (lensgraph/front_door.py), as make run serves")
    parser.add_argument("--latency-target-ms", type=int, default=int(1000 * front_door_limit.DEFAULT_TARGET_S),
                        help="the front door's latency target, as lensgraph run's (0: its fixed limit)")
    parser.add_argument("--override", type=json.loads, default=None, metavar="JSON",
                        help="per-deployment serve_config fields, e.g. the Preprocessor's max_in_flight")
    args = parser.parse_args(argv)
    if settings.assets_dir() is None:
        sys.exit("set LENSGRAPH_ASSETS to the assets folder")
    run = {"command": " ".join(["python -m benchmarks.overload", *(sys.argv[1:] if argv is None else argv)]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "override": args.override, "rows": []}
    with served_app(args.override) as (_, running, _app), front(running.port, args.front_door, args.latency_target_ms / 1000) as (port, roots):
        for pipeline in [p for p in args.pipelines.split(",") if p]:
            run["rows"] += measure(running.roots + roots, port, pipeline, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = save_run(args.out / "overload.json", args.label, run)
    (args.out / "overload.md").write_text(render(runs))
    print(render({args.label: run}))


if __name__ == "__main__":
    main()
