"""Where the served application's CPU goes, per process: CPU milliseconds per request of every
replica and of Serve's and Ray's own processes, what the idle cluster burns, its memory, and a
py-spy flame graph of the HTTP ingress replica.

    python -m benchmarks.cpu_accounting --label before          # about 3 min on 2 cores
    python -m benchmarks.cpu_accounting --label after           # after a change: both stay in the report
    python -m benchmarks.cpu_accounting --pipelines classify --seconds 2 --idle-seconds 3 \\
        --settle-seconds 3 --profile-seconds 2 --out /tmp/cpu_smoke --label smoke   # a quick check

The application starts as benchmarks/systems.py's lensgraph() starts it (a private Ray cluster
with configs/serve.env, serve_config.yaml on a free port). Every process of the cluster's tree is
given a role from its command line (benchmarks.process_stats.role), so replicas of a new or renamed
deployment are counted without a list of deployments here. CPU is user + system time from /proc,
read per process before and after each window; PSS is the memory measure (shared pages counted once).

Writes <out>/cpu_accounting.json (one run per --label, replaced when run again under that label),
regenerates <out>/cpu_accounting.md from every label in it, and writes <out>/flame_ingress.svg
(and flame_<deployment>_served.svg for the other deployments given to --profile).
Run it on a quiet machine: the report shows how busy the whole machine was in each window.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from benchmarks.compare import HOST, machine
from benchmarks.loadgen import build_request, run_load
from benchmarks.process_stats import cpu_by_process, cpu_by_role, machine_busy_seconds, pss_by_role
from benchmarks.served_study import flame
from benchmarks.systems import Running, private_cluster, wait_http
from benchmarks.workloads import PIPELINES, load
from lensgraph import settings
from lensgraph.devcluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
WARMUP_S = 3.0


@contextlib.contextmanager
def served_app(overrides: dict | None = None, env_changes: dict | None = None
               ) -> Iterator[tuple[LocalCluster, Running, str]]:
    """systems.lensgraph()'s start-up, keeping the cluster (its dashboard names the ingress) and
    the application's name: (cluster, running, app name)."""
    cluster, port, config = private_cluster(overrides=overrides, env_changes=env_changes)
    app = yaml.safe_load(config.read_text())["applications"][0]["name"]
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running(app)
        wait_http(f"http://{HOST}:{port}/readyz", 120)
        yield cluster, Running("lensgraph", port, [n.process.pid for n in cluster.nodes], PIPELINES), app
    finally:
        cluster.stop()


def ingress_deployment(cluster: LocalCluster, app: str, roles: set[str]) -> tuple[str, str]:
    """(name, where it came from): Serve's REST API knows the application's ingress; if it does not
    say, Gateway where one runs (the graph with a separate gateway), else Preprocessor."""
    try:
        details = cluster.api("/api/serve/applications/")["applications"][app]
        topology = details.get("deployment_topology") or {}
        if topology.get("ingress_deployment"):
            return topology["ingress_deployment"], "Serve REST API"
    except Exception as exc:  # an older Serve or a dashboard hiccup: fall back to the names
        print(f"ingress from the REST API failed: {exc}", file=sys.stderr)
    return ("Gateway" if "replica: Gateway" in roles else "Preprocessor"), "fallback by name"


def replica_pid(roots: list[int], deployment: str) -> int | None:
    """The first replica process of ``deployment`` in the tree (py-spy profiles one process)."""
    pids = sorted(pid for pid, (role, _) in cpu_by_process(roots).items() if role == f"replica: {deployment}")
    return pids[0] if pids else None


def measure_window(roots: list[int], action: Callable[[], object]) -> tuple[object, float, dict, float]:
    """Run ``action`` and account the CPU spent meanwhile: (its result, wall seconds, CPU seconds
    per role in the tree, CPU seconds of the whole machine)."""
    before, busy0, t0 = cpu_by_process(roots), machine_busy_seconds(), time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - t0
    after, busy1 = cpu_by_process(roots), machine_busy_seconds()
    return result, elapsed, cpu_by_role(before, after), busy1 - busy0


def measure_idle(roots: list[int], settle_s: float, seconds: float) -> dict:
    """Cores used per role by the cluster at rest (after ``settle_s`` for start-up work to end), and PSS."""
    time.sleep(settle_s)
    _, elapsed, roles, busy = measure_window(roots, lambda: time.sleep(seconds))
    memory = pss_by_role(roots)
    rows = {r: {"processes": max(roles.get(r, {}).get("processes", 0), memory.get(r, {}).get("processes", 0)),
                "cores": round(roles.get(r, {}).get("cpu_s", 0.0) / elapsed, 4),
                "pss_mb": round(memory.get(r, {}).get("pss_mb", 0.0), 1)} for r in sorted(set(roles) | set(memory))}
    return {"seconds": round(elapsed, 2), "settle_seconds": settle_s, "roles": rows,
            "total_cores": round(sum(v["cores"] for v in rows.values()), 4),
            "total_pss_mb": round(sum(v["pss_mb"] for v in rows.values()), 1),
            "machine_cores": round(busy / elapsed, 3)}


def measure_pipeline(roots: list[int], port: int, pipeline: str, concurrency: int, seconds: float) -> dict:
    """CPU ms per completed request of every role under closed-loop load, after a warm-up."""
    requests = requests_for(pipeline, port)
    run_load(HOST, port, requests, concurrency, WARMUP_S, warmup_s=0)
    result, elapsed, roles, busy = measure_window(
        roots, lambda: run_load(HOST, port, requests, concurrency, seconds, warmup_s=0))
    done = result.completed
    rows = {r: {"processes": v["processes"], "cores": round(v["cpu_s"] / elapsed, 4),
                "cpu_ms_per_request": round(1000 * v["cpu_s"] / done, 3) if done else None} for r, v in roles.items()}
    total_s = sum(v["cpu_s"] for v in roles.values())
    return {"client": result.summary(), "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            "roles": rows, "total_cores": round(total_s / elapsed, 4),
            "total_cpu_ms_per_request": round(1000 * total_s / done, 3) if done else None,
            "machine_cores": round(busy / elapsed, 3)}


def requests_for(pipeline: str, port: int) -> list[bytes]:
    w = load(pipeline, settings.assets_dir())
    return [build_request(HOST, port, w.path, body, w.content_type) for body in w.images]


def profile(roots: list[int], port: int, deployment: str, svg: Path, seconds: float, concurrency: int) -> str:
    """A py-spy flame graph of one replica of ``deployment`` during classify load: the file name,
    or why there is none."""
    pid = replica_pid(roots, deployment)
    if pid is None:
        return f"failed: no replica process of {deployment}"
    errors: list = []
    spy = threading.Thread(target=lambda: errors.append(flame(pid, seconds, svg)))
    spy.start()
    run_load(HOST, port, requests_for("classify", port), concurrency, seconds + 2, warmup_s=0)
    spy.join()
    return svg.name if errors == [None] else f"failed: {errors}"


def save_run(path: Path, label: str, run: dict) -> dict:
    """Put ``run`` under ``label`` in the JSON file (replacing an earlier run of that label); all runs."""
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[label] = run
    path.write_text(json.dumps(runs, indent=1) + "\n")
    return runs


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def comparison_table(runs: dict) -> list[str]:
    """One row per label: total CPU ms/request and req/s per pipeline, idle cores, idle PSS."""
    pipelines = [p for p in PIPELINES if any(p in r["pipelines"] for r in runs.values())]
    head = "| label | idle cores | idle PSS MiB | " + " | ".join(f"{p} CPU ms/req | {p} req/s" for p in pipelines) + " |"
    lines = [head, "|---|" + "---:|" * (2 + 2 * len(pipelines))]
    for label, r in runs.items():
        cells = [label, _num(r["idle"]["total_cores"], 3), _num(r["idle"]["total_pss_mb"], 0)]
        for p in pipelines:
            data = r["pipelines"].get(p)
            cells += [_num(data["total_cpu_ms_per_request"]), _num(data["client"]["throughput_rps"])] if data else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def idle_table(idle: dict) -> list[str]:
    lines = [f"### Idle ({idle['seconds']:g} s, {idle['settle_seconds']:g} s after ready)", "",
             "| role | processes | cores | PSS MiB |", "|---|---:|---:|---:|"]
    for role, v in sorted(idle["roles"].items(), key=lambda kv: (-kv[1]["cores"], -kv[1]["pss_mb"])):
        lines.append(f"| {role} | {v['processes']} | {v['cores']:.3f} | {v['pss_mb']:.1f} |")
    lines += [f"| **total** | {sum(v['processes'] for v in idle['roles'].values())} | **{idle['total_cores']:.3f}** | "
              f"**{idle['total_pss_mb']:.0f}** |", "",
              f"The whole machine was busy {idle['machine_cores']:.3f} cores in the same window.", ""]
    return lines


def pipeline_table(pipeline: str, data: dict) -> list[str]:
    c = data["client"]
    total = data["total_cpu_ms_per_request"]
    lines = [f"### {pipeline}: {c['throughput_rps']} req/s, p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, "
             f"{c['failures']} failures", "",
             "| role | processes | CPU ms/request | cores | share |", "|---|---:|---:|---:|---:|"]
    for role, v in sorted(data["roles"].items(), key=lambda kv: -kv[1]["cores"]):
        share = f"{100 * v['cores'] / data['total_cores']:.1f}%" if data["total_cores"] else ""
        lines.append(f"| {role} | {v['processes']} | {_num(v['cpu_ms_per_request'], 2)} | {v['cores']:.3f} | {share} |")
    others = data["machine_cores"] - data["total_cores"] - c["client_cpu_share"]
    lines += [f"| **total** | {sum(v['processes'] for v in data['roles'].values())} | **{_num(total, 2)}** | "
              f"**{data['total_cores']:.3f}** | |", "",
              f"{c['requests']} requests at {c['concurrency']} connections. The machine was busy "
              f"{data['machine_cores']:.2f} cores: the cluster {data['total_cores']:.2f}, the load generator "
              f"{c['client_cpu_share']:.2f}, everything else {others:.2f}.", ""]
    return lines


def render(runs: dict) -> str:
    """The markdown report of every labelled run."""
    lines = ["# CPU accounting: where each request's CPU goes, per process", "",
             "Written by `python -m benchmarks.cpu_accounting` (see its docstring). CPU is user + system time of "
             "every process of the cluster's tree, read from /proc before and after each window and grouped by "
             "role (replicas by deployment; Serve's and Ray's own processes by what they are). *CPU ms/request*: "
             "CPU milliseconds spent in the window divided by the requests completed in it (failed ones are not "
             "in the divisor); *cores*: CPU seconds per wall second. Memory is PSS, so the column sums to the "
             "cluster's footprint.", "", "## Comparison", "", *comparison_table(runs), ""]
    for label, r in runs.items():
        s = r["settings"]
        lines += [f"## {label}", "", f"`{r['command']}`, {r['date']}, {r['machine']}. {s['concurrency']} connections, "
                  f"{s['seconds']:g} s per pipeline after {WARMUP_S:g} s of warm-up; ingress deployment "
                  f"{r['ingress']} ({r['ingress_source']})"
                  + (f"; overrides `{json.dumps(s['override'])}`" if s.get("override") else "") + ".", "",
                  *idle_table(r["idle"])]
        for pipeline, data in r["pipelines"].items():
            lines += pipeline_table(pipeline, data)
        if r.get("flame"):
            lines += ["Flame graphs (py-spy, classify load): "
                      + ", ".join(f"[{d}]({v})" if v.endswith(".svg") else f"{d}: {v}" for d, v in r["flame"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per pipeline")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--settle-seconds", type=float, default=20.0, help="wait after ready before the idle window")
    parser.add_argument("--label", default="current", help="the run's name in the JSON and the report")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="py-spy duration; 0: no flame graphs")
    parser.add_argument("--profile", default="ingress,Classifier",
                        help="deployments to profile one after another ('ingress' = the application's ingress)")
    parser.add_argument("--ingress", default=None, help="the ingress deployment's name (default: ask Serve)")
    parser.add_argument("--override", type=json.loads, default=None, metavar="JSON",
                        help="per-deployment serve_config fields, as benchmarks.compare takes them")
    parser.add_argument("--env", type=json.loads, default=None, metavar="JSON",
                        help='configs/serve.env changed for this run, e.g. \'{"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": null}\' '
                             "(null drops a variable: Ray's default)")
    args = parser.parse_args(argv)
    if settings.assets_dir() is None:
        sys.exit("set LENSGRAPH_ASSETS to the assets folder")
    pipelines = [p for p in args.pipelines.split(",") if p]
    args.out.mkdir(parents=True, exist_ok=True)
    run: dict = {"command": " ".join(["python -m benchmarks.cpu_accounting", *(sys.argv[1:] if argv is None else argv)]),
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                 "settings": {"concurrency": args.concurrency, "seconds": args.seconds, "idle_seconds": args.idle_seconds,
                              "settle_seconds": args.settle_seconds, "override": args.override,
                              "env": args.env},
                 "ingress": None, "ingress_source": None, "idle": None, "pipelines": {}, "flame": {}}
    with served_app(args.override, args.env) as (cluster, running, app):
        roots = running.roots
        run["idle"] = measure_idle(roots, args.settle_seconds, args.idle_seconds)
        print("idle", json.dumps(run["idle"]), flush=True)
        if args.ingress:
            run["ingress"], run["ingress_source"] = args.ingress, "--ingress"
        else:
            run["ingress"], run["ingress_source"] = ingress_deployment(cluster, app, set(run["idle"]["roles"]))
        for pipeline in pipelines:
            run["pipelines"][pipeline] = measure_pipeline(roots, running.port, pipeline, args.concurrency, args.seconds)
            print(pipeline, json.dumps(run["pipelines"][pipeline]), flush=True)
        for target in (t for t in args.profile.split(",") if t and args.profile_seconds > 0):
            deployment = run["ingress"] if target == "ingress" else target
            svg = args.out / ("flame_ingress.svg" if target == "ingress" else f"flame_{deployment.lower()}_served.svg")
            run["flame"][deployment] = profile(roots, running.port, deployment, svg, args.profile_seconds,
                                               args.concurrency)
            print("flame", deployment, run["flame"][deployment], flush=True)
    runs = save_run(args.out / "cpu_accounting.json", args.label, run)
    (args.out / "cpu_accounting.md").write_text(render(runs))
    print(render({args.label: run}))


if __name__ == "__main__":
    main()
