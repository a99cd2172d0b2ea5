"""The side-by-side benchmark: floor, lensgraph (chosen and default Serve settings), the seed-style
baseline and the peers, one after another on this machine, in one run.

    python -m benchmarks.compare                      # or: make benchmark
    python -m benchmarks.compare --pipelines digits --systems lensgraph --seconds 5   # a quick look

Writes docs/benchmarks/results.json (one record per system, pipeline and concurrency),
docs/benchmarks/results.md (tables and the targets) and docs/benchmarks/*.png. Load comes from
the low-overhead asyncio client (benchmarks/loadgen.py) in this process; its own CPU share is
reported. Never run it next to other CPU work: the machine has two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import psutil

from benchmarks import floor, systems
from benchmarks.loadgen import build_request, run_load
from benchmarks.process_stats import cpu_seconds, memory_mb
from benchmarks.workloads import PIPELINES, load
from lensgraph import settings

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("floor", "lensgraph", "lensgraph-serve-defaults", "baseline-fastapi", "bentoml", "triton")
CONCURRENCY = (1, 8, 32, 64)
HOST = "127.0.0.1"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {round(psutil.virtual_memory().total / 2**30)} GiB, " \
           f"Python {platform.python_version()}"


def _factory(system: str, overrides: dict | None = None):
    if system == "lensgraph":
        return systems.lensgraph(optimized=True, overrides=overrides)
    if system == "lensgraph-serve-defaults":
        return systems.lensgraph(optimized=False)
    if system == "baseline-fastapi":
        return systems.baseline()
    from benchmarks.peers import launch  # peers: their own virtual environments

    return launch.peer_server(system)


def measure_served(running: systems.Running, workloads: dict, concurrency: tuple[int, ...], seconds: float) -> list[dict]:
    records = []
    for pipeline in running.pipelines:
        if pipeline not in workloads:
            continue
        w = workloads[pipeline]
        if running.request_for is None:
            requests = [build_request(HOST, running.port, w.path, body, w.content_type) for body in w.images]
        else:
            requests = [running.request_for(HOST, running.port, body) for body in w.images]
        for c in concurrency:
            run_load(HOST, running.port, requests, c, min(3.0, seconds), warmup_s=0)  # warm-up at this concurrency
            cpu0 = cpu_seconds(running.roots)
            result = run_load(HOST, running.port, requests, c, seconds, warmup_s=0)
            cpu = cpu_seconds(running.roots) - cpu0
            summary = result.summary()
            record = {
                "pipeline": pipeline, "system": running.system, **summary,
                "cpu_s_per_request": round(cpu / max(1, result.completed), 5),
                "rss_mb": memory_mb(running.roots),
                "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            }
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def measure_floor(workloads: dict, seconds: float) -> list[dict]:
    from lensgraph.inference.local import LocalPipelines

    before = psutil.Process().memory_full_info().pss
    repository = settings.model_repository_dir()
    local = {threads: LocalPipelines(repository, threads=threads, pipelines=tuple(workloads)) for threads in (1, 2)}
    records = []
    for pipeline, w in workloads.items():
        for record in floor.measure(local, w, seconds):
            record = {"pipeline": pipeline, "system": "floor", **record,
                      "rss_mb": round((psutil.Process().memory_full_info().pss - before) / 2**20, 1),
                      "client_cpu_share": 0.0}
            print(json.dumps(record), flush=True)
            records.append(record)
    del local
    gc.collect()
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point (after 3 s warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--override", type=json.loads, default=None, metavar="JSON",
                        help='experiments: per-deployment serve_config fields for lensgraph, e.g. '
                             '\'{"Classifier": {"user_config": {"intra_op_threads": 1}}}\'')
    args = parser.parse_args(argv)
    assets = settings.assets_dir()
    if assets is None:
        sys.exit("set LENSGRAPH_ASSETS to the assets folder")
    pipelines = [p for p in args.pipelines.split(",") if p]
    concurrency = tuple(int(c) for c in args.concurrency.split(","))
    workloads = {p: load(p, assets) for p in pipelines}
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = {"machine": machine(), "date": date}
    load_before = os.getloadavg()
    records: list[dict] = []
    for system in [s for s in args.systems.split(",") if s]:
        if system not in SYSTEMS:
            sys.exit(f"unknown system {system!r}; use {', '.join(SYSTEMS)}")
        started = time.monotonic()
        if system == "floor":
            records += measure_floor(workloads, args.seconds)
        else:
            try:
                with _factory(system, args.override) as running:
                    records += measure_served(running, workloads, concurrency, args.seconds)
            except Exception as exc:  # a peer that cannot start is reported, not fatal to the run
                print(f"{system}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                records.append({"pipeline": None, "system": system, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        print(f"# {system}: {time.monotonic() - started:.0f} s", flush=True)
    command = "python -m benchmarks.compare" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv))
    records = [{**r, **meta} for r in records]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(records, indent=1) + "\n")
    from benchmarks.report import write_report

    run = {**meta, "command": command, "seconds": args.seconds, "load_before": load_before,
           "load_after": os.getloadavg(), "workloads": {p: w.description for p, w in workloads.items()}}
    (args.out / "results_meta.json").write_text(json.dumps(run, indent=1) + "\n")
    write_report(records, args.out, run)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
