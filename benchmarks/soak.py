"""Soak: the mixed locust load for minutes on end; does memory grow, do failures or latency creep in?

    python -m benchmarks.soak --minutes 10      # or: make soak [SOAK_MINUTES=10]; writes docs/benchmarks/soak.*

The service runs as `make run` runs it (serve_config.yaml, configs/serve.env) on a private Ray node
(lensgraph.devcluster); locust's MixedUser (loadtests/locustfile.py, which checks every body) sends
closed-loop requests from ``--users`` users. Every 10 s the RSS of every process of the node is
recorded (Ray's processes by their name: ``ray::ServeReplica:lensgraph:Classifier``, ``raylet``...).
Per minute: requests, failures and the highest p99 locust reported for its rolling window. Memory growth
is measured from the end of ``--warmup-minutes`` (first batches, allocator pools, caches) to the end.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

from benchmarks.systems import wait_http
from lensgraph import serve_env, settings
from lensgraph.devcluster import LocalCluster, descendants, free_port, serve_config_for_test

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_S = 10


def _label(proc: psutil.Process) -> str:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "?"
    first = cmd[0] if cmd else proc.name()
    if first.startswith("ray::"):
        return first.split(".")[0]
    name = Path(first).name
    if name.startswith("python") and len(cmd) > 1:
        script = next((Path(a).stem for a in cmd[1:] if a.endswith(".py")), cmd[1])
        return f"python {script}"
    return name


def sample(roots: list[int]) -> dict[str, float]:
    """label -> RSS in MiB; several processes with one label (two ingress replicas) are numbered."""
    out: dict[str, float] = {}
    seen: dict[str, int] = defaultdict(int)
    for pid in sorted({*roots, *descendants(roots)}):
        try:
            proc = psutil.Process(pid)
            rss = proc.memory_info().rss / 2**20
        except psutil.Error:
            continue
        label = _label(proc)
        seen[label] += 1
        out[label if seen[label] == 1 else f"{label} #{seen[label]}"] = round(rss, 1)
    return out


def per_minute(history: Path, start: float) -> list[dict]:
    """From locust's --csv-full-history: the Aggregated rows, bucketed by minute since the start."""
    rows = [r for r in csv.DictReader(history.open()) if r["Name"] == "Aggregated"]
    minutes: dict[int, dict] = {}
    for r in rows:
        t = int(r["Timestamp"]) - start
        if t < 0:
            continue
        m = int(t // 60)
        bucket = minutes.setdefault(m, {"minute": m + 1, "requests_total": 0, "failures_total": 0, "p99_ms": 0.0})
        bucket["requests_total"] = max(bucket["requests_total"], int(r["Total Request Count"]))
        bucket["failures_total"] = max(bucket["failures_total"], int(r["Total Failure Count"]))
        p99 = r.get("99%", "N/A")
        if p99 not in ("N/A", ""):
            bucket["p99_ms"] = max(bucket["p99_ms"], float(p99))
    out, previous = [], {"requests_total": 0, "failures_total": 0}
    for m in sorted(minutes):
        b = minutes[m]
        out.append({"minute": b["minute"], "requests": b["requests_total"] - previous["requests_total"],
                    "failures": b["failures_total"] - previous["failures_total"], "p99_ms": b["p99_ms"]})
        previous = b
    return out


def run(minutes: float, users: int, warmup_minutes: float) -> dict:
    env = {**serve_env.load(), "LENSGRAPH_MODEL_REPOSITORY": str(settings.model_repository_dir())}
    cluster = LocalCluster(head_cpus=2, env=env)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    config = serve_config_for_test(ROOT / "serve_config.yaml", workdir / "serve.yaml", port)
    samples: list[dict] = []
    stop = threading.Event()
    report: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": f"python -m benchmarks.soak --minutes {minutes:g} --users {users}",
                    "minutes": minutes, "users": users, "warmup_minutes": warmup_minutes}
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running(timeout=300)
        wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        roots = [n.process.pid for n in cluster.nodes]
        start = time.time()

        def sampler() -> None:
            while not stop.is_set():
                samples.append({"t_s": round(time.time() - start, 1), "rss_mib": sample(roots)})
                stop.wait(SAMPLE_S)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        prefix = workdir / "soak"
        locust = [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "loadtests/locustfile.py"),
                  "--headless", "--host", f"http://127.0.0.1:{port}", "-u", str(users), "-r", str(users),
                  "-t", f"{int(minutes * 60)}s", "--csv", str(prefix), "--csv-full-history", "--only-summary",
                  "MixedUser"]
        done = subprocess.run(locust, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=minutes * 60 + 300)
        stop.set()
        thread.join()
        report["locust_exit"] = done.returncode
        report["locust_tail"] = done.stderr[-1500:]
        report["per_minute"] = per_minute(Path(f"{prefix}_stats_history.csv"), int(start))
        failures = Path(f"{prefix}_failures.csv")
        report["failure_kinds"] = list(csv.DictReader(failures.open()))[:20] if failures.exists() else []
    finally:
        stop.set()
        cluster.stop()
    report["samples"] = samples
    report.update(growth(samples, warmup_minutes * 60))
    return report


def growth(samples: list[dict], warmup_s: float) -> dict:
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 2:
        return {"growth": None}
    first, last = after[0], after[-1]
    total = lambda s: sum(s["rss_mib"].values())  # noqa: E731
    per_process = {}
    for label, mib in first["rss_mib"].items():
        end = last["rss_mib"].get(label)
        if end is not None:
            per_process[label] = {"after_warmup_mib": mib, "end_mib": end, "growth_pct": round(100 * (end - mib) / mib, 1)}
    return {"growth": {"from_s": first["t_s"], "to_s": last["t_s"], "total_after_warmup_mib": round(total(first), 1),
                       "total_end_mib": round(total(last), 1),
                       "total_growth_pct": round(100 * (total(last) - total(first)) / total(first), 1),
                       "per_process": per_process}}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=False)
    labels = sorted({k for s in report["samples"] for k in s["rss_mib"]},
                    key=lambda k: -max(s["rss_mib"].get(k, 0) for s in report["samples"]))
    ts = [s["t_s"] / 60 for s in report["samples"]]
    for label in labels[:10]:
        top.plot(ts, [s["rss_mib"].get(label, float("nan")) for s in report["samples"]], label=label.replace("ray::", ""))
    top.set_ylabel("RSS (MiB)")
    top.set_xlabel("minutes")
    top.set_title(f"RSS of the 10 largest processes, every {SAMPLE_S} s")
    top.legend(fontsize=6, ncol=2)
    minutes = report.get("per_minute", [])
    bottom.bar([m["minute"] for m in minutes], [m["p99_ms"] for m in minutes], color="tab:blue", label="p99 (ms)")
    bottom.set_xlabel("minute")
    bottom.set_ylabel("highest rolling p99 (ms)")
    failed = [m["failures"] for m in minutes]
    bottom.set_title(f"p99 per minute; failures per minute: {failed}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write_markdown(report: dict, path: Path, png: str) -> None:
    g = report.get("growth") or {}
    minutes = report.get("per_minute", [])
    lines = ["# Soak: mixed load for minutes on end", "",
             f"Reproduce: `{report['command']}` (`make soak`). Measured {report['date']} on this 2-core machine: "
             f"serve_config.yaml on one Ray node started as `make run` starts it, locust's MixedUser "
             f"(every body checked) from {report['users']} closed-loop users for {report['minutes']:g} minutes "
             f"(locust exit status {report.get('locust_exit')}). RSS of every process every {SAMPLE_S} s; "
             f"growth from {report['warmup_minutes']:g} minute(s) in (warm-up) to the end.", "",
             f"![RSS and p99]({png})", "",
             "| minute | requests | failures | highest rolling p99 (ms) |", "|---:|---:|---:|---:|"]
    lines += [f"| {m['minute']} | {m['requests']} | {m['failures']} | {m['p99_ms']:g} |" for m in minutes]
    if g:
        lines += ["", f"Total RSS of the node's processes: {g['total_after_warmup_mib']} MiB at {g['from_s']:g} s, "
                  f"{g['total_end_mib']} MiB at {g['to_s']:g} s: **{g['total_growth_pct']:+g}%** "
                  "(RSS counts pages shared between processes once per process, so the total overstates the "
                  "memory used; the growth is what matters here).", "",
                  "| process | after warm-up (MiB) | end (MiB) | growth |", "|---|---:|---:|---:|"]
        rows = sorted(g["per_process"].items(), key=lambda kv: -kv[1]["end_mib"])
        lines += [f"| {label} | {v['after_warmup_mib']} | {v['end_mib']} | {v['growth_pct']:+g}% |" for label, v in rows]
    if report.get("failure_kinds"):
        lines += ["", "Failures by kind (locust):", ""]
        lines += [f"- {f.get('Method')} {f.get('Name')}: {f.get('Error')} ({f.get('Occurrences')})"
                  for f in report["failure_kinds"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--warmup-minutes", type=float, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args.minutes, args.users, args.warmup_minutes)
    (args.out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out / "soak.png")
    write_markdown(report, args.out / "soak.md", "soak.png")
    print((args.out / "soak.md").read_text())


if __name__ == "__main__":
    main()
