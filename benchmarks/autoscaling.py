"""Autoscaling under a stepped load: replicas up with the load, and back down after it.

    python -m benchmarks.autoscaling        # or: make autoscaling; writes docs/benchmarks/autoscaling.{json,md,png}

The CPU profile (configs/profiles/cpu.yaml) on a private Ray cluster, with its autoscaling
settings scaled to this 2-core machine (below: at most 3 replicas, a lower queue target so a
few users are enough to ask for more). Locust's ``ClassifyUser`` (loadtests/) steps the users up
and back down (LOADTEST_SHAPE=step); every second this script reads each deployment's running
replicas from Serve's REST API; locust's per-second history gives throughput and latency.
Ray's logical CPUs are set above the physical two so replica count, not CPU bookkeeping, is what
the autoscaler decides: more replicas here mean more queues and batches, not more cores.
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
from pathlib import Path

from benchmarks.systems import private_cluster, wait_http

ROOT = Path(__file__).resolve().parents[1]
WATCH = ("Preprocessor", "Classifier")
AUTOSCALING = {"min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 5, "downscale_delay_s": 15,
               "metrics_interval_s": 1, "look_back_period_s": 5}
OVERRIDES = {
    # The ingress counts every request in flight (also while the models work): a higher target.
    "Preprocessor": {"autoscaling_config": {**AUTOSCALING, "target_ongoing_requests": 16},
                     "ray_actor_options": {"num_cpus": 0.5}, "user_config": {"decode_threads": 0}},
    "Classifier": {"autoscaling_config": {**AUTOSCALING, "target_ongoing_requests": 2},
                   "ray_actor_options": {"num_cpus": 0.5},
                   "user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.0, "intra_op_threads": 1}},
}


def run(peak_users: int, step_users: int, step_seconds: float, tail_seconds: float, out: Path) -> dict:
    cluster, port, config = private_cluster(ROOT / "configs" / "profiles" / "cpu.yaml", OVERRIDES, head_cpus=8)
    levels = list(range(step_users, peak_users + 1, step_users))
    duration = step_seconds * (2 * len(levels) - 1)
    samples: list[dict] = []
    stop = threading.Event()
    try:
        cluster.start_head()
        cluster.deploy(config)
        cluster.wait_running(timeout=300)
        wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        t0 = time.time()

        def watch() -> None:
            while not stop.is_set():
                try:
                    replicas = cluster.replicas()
                    samples.append({"t": round(time.time() - t0, 1), **{d: sum(1 for r in replicas.get(d, [])
                                    if r.get("state") == "RUNNING") for d in WATCH}})
                except OSError:
                    pass
                stop.wait(1.0)

        watcher = threading.Thread(target=watch)
        watcher.start()
        prefix = out / "autoscaling_locust"
        locust_env = {**os.environ, "LOADTEST_SHAPE": "step", "LOADTEST_MAX_USERS": str(peak_users),
                      "LOADTEST_STEP_USERS": str(step_users), "LOADTEST_STEP_SECONDS": str(step_seconds)}
        locust = [str(Path(sys.executable).parent / "locust"), "-f", "loadtests/locustfile.py", "--headless",
                  "--host", f"http://127.0.0.1:{port}", "-u", str(peak_users), "-r", str(max(1, step_users)),
                  "-t", f"{int(duration)}s", "--csv", str(prefix), "--csv-full-history", "--only-summary",
                  "ClassifyUser"]
        started = time.time() - t0
        done = subprocess.run(locust, cwd=ROOT, env=locust_env, capture_output=True, text=True,
                              timeout=duration + 120)
        ended = time.time() - t0
        time.sleep(tail_seconds)  # no load: the autoscaler should come back down to min_replicas
        stop.set()
        watcher.join()
    finally:
        stop.set()
        cluster.stop()
    history = read_history(prefix.with_name(prefix.name + "_stats_history.csv"), t0)
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.autoscaling", "levels": levels, "step_seconds": step_seconds,
              "load_started_s": round(started, 1), "load_ended_s": round(ended, 1),
              "locust_exit": done.returncode, "locust_tail": done.stderr[-1500:],
              "autoscaling": {d: OVERRIDES[d]["autoscaling_config"] for d in WATCH},
              "replicas": samples, "history": history}
    result["events"] = scale_events(samples)
    return result


def read_history(path: Path, t0: float) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("Name") != "Aggregated":
                continue

            def num(key: str) -> float | None:
                value = row.get(key, "")
                return float(value) if value not in ("", "N/A") else None

            rows.append({"t": round(float(row["Timestamp"]) - t0, 1), "users": int(float(row["User Count"])),
                         "rps": num("Requests/s"), "failures_per_s": num("Failures/s"),
                         "p50_ms": num("50%"), "p99_ms": num("99%")})
    return rows


def scale_events(samples: list[dict]) -> list[dict]:
    events, last = [], {}
    for s in samples:
        for d in WATCH:
            if d in last and s[d] != last[d]:
                events.append({"t": s["t"], "deployment": d, "from": last[d], "to": s[d]})
            last[d] = s[d]
    return events


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    h = result["history"]
    axes[0].plot([r["t"] for r in h], [r["users"] for r in h], label="locust users", color="gray")
    axes[0].plot([r["t"] for r in h], [r["rps"] or 0 for r in h], label="requests/s (answered)")
    axes[0].set_ylabel("users, req/s")
    axes[0].legend(fontsize=8)
    axes[1].plot([r["t"] for r in h], [r["p50_ms"] for r in h], label="p50")
    axes[1].plot([r["t"] for r in h], [r["p99_ms"] for r in h], label="p99")
    axes[1].set_ylabel("latency ms (locust, per second)")
    axes[1].legend(fontsize=8)
    for d in WATCH:
        axes[2].step([s["t"] for s in result["replicas"]], [s[d] for s in result["replicas"]], where="post", label=d)
    axes[2].set_ylabel("running replicas")
    axes[2].set_xlabel("seconds")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.axvline(result["load_ended_s"], color="black", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Classify under a stepped load: Serve's autoscaler (dotted: load ends)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_markdown(result: dict, path: Path) -> None:
    lines = ["# Autoscaling under a stepped load", "",
             f"Reproduce: `{result['command']}` (`make autoscaling`). Measured {result['date']} on this 2-core "
             f"machine. Locust `ClassifyUser`, users {result['levels']} then back down, {result['step_seconds']:g} s "
             f"per level; load from {result['load_started_s']} s to {result['load_ended_s']} s, then none.", "",
             "Autoscaling settings (the CPU profile's, scaled to 2 cores):", "", "```json",
             json.dumps(result["autoscaling"], indent=1), "```", "", "![autoscaling](autoscaling.png)", "",
             "Replica changes seen (every second, Serve's REST API):", "", "| t (s) | deployment | from | to |",
             "|---:|---|---:|---:|"]
    lines += [f"| {e['t']} | {e['deployment']} | {e['from']} | {e['to']} |" for e in result["events"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peak-users", type=int, default=12)
    parser.add_argument("--step-users", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=20)
    parser.add_argument("--tail-seconds", type=float, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    result = run(args.peak_users, args.step_users, args.step_seconds, args.tail_seconds, work)
    (args.out / "autoscaling.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "autoscaling.png")
    write_markdown(result, args.out / "autoscaling.md")
    print((args.out / "autoscaling.md").read_text())


if __name__ == "__main__":
    main()
