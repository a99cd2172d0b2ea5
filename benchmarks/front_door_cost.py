"""What the front door (lensgraph/front_door.py) costs an accepted request: one app, loaded directly and
through the front door in alternation, closed loop, same generator.

    python -m benchmarks.front_door_cost [--seconds 15] [--rounds 2] [--concurrency 16,32]

Prints req/s, p50/p99 and the server's CPU ms per request (the whole process tree, HAProxy included)
for each route, way and concurrency; appends them to docs/benchmarks/front_door_cost.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from benchmarks.compare import HOST, machine
from benchmarks.cpu_accounting import served_app
from benchmarks.loadgen import build_request, run_load
from benchmarks.overload import front
from benchmarks.process_stats import cpu_seconds
from benchmarks.workloads import load
from lensgraph import settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="16,32")
    parser.add_argument("--pipelines", default="classify,digits")
    args = parser.parse_args()
    rows = []
    with served_app() as (_, running, _app), front(running.port, True) as (door_port, door_roots):
        for pipeline in args.pipelines.split(","):
            w = load(pipeline, settings.assets_dir())
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                for rnd in range(args.rounds):
                    for way, port, roots in (("direct", running.port, running.roots),
                                             ("front door", door_port, running.roots + door_roots)):
                        requests = [build_request(HOST, port, w.path, b, w.content_type) for b in w.images]
                        cpu0 = cpu_seconds(roots)
                        s = run_load(HOST, port, requests, concurrency, args.seconds, warmup_s=2).summary()
                        cpu = cpu_seconds(roots) - cpu0
                        row = {"pipeline": pipeline, "way": way, "concurrency": concurrency, "round": rnd + 1,
                               "rps": s["throughput_rps"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                               "failures": s["failures"],
                               "server_cpu_ms_per_request": round(1000 * cpu / max(1, s["requests"]), 2)}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    out = ROOT / "docs" / "benchmarks" / "front_door_cost.md"
    lines = [f"## {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}", "",
             f"`python -m benchmarks.front_door_cost --seconds {args.seconds:g} --rounds {args.rounds} "
             f"--concurrency {args.concurrency} --pipelines {args.pipelines}`, {machine()}.", "",
             "| route | connections | round | way | req/s | p50 / p99 ms | server CPU ms per request | failures |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['pipeline']} | {r['concurrency']} | {r['round']} | {r['way']} | {r['rps']} | {r['p50_ms']} / "
              f"{r['p99_ms']} | {r['server_cpu_ms_per_request']} | {r['failures']} |" for r in rows]
    header = "" if out.exists() else ("# The front door's cost per accepted request\n\nThe same app, loaded directly "
                                      "and through lensgraph/front_door.py in alternation (see the script).\n\n")
    with open(out, "a") as f:
        f.write(header + "\n".join(lines) + "\n\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
