"""Faults and upgrades under load: kill each kind of replica in turn, then `serve deploy` a changed config.

    python -m benchmarks.faults              # or: make faults; writes docs/benchmarks/faults.{json,md}

One private Ray cluster on this machine (lensgraph.devcluster, the `make run` environment from
configs/serve.env) runs serve_config.yaml, behind the front door as `make run` serves it
(``--no-front-door``: Serve's port directly). For each deployment in turn, closed-loop load from
8 connections on the routes that use it; once its replica holds at least ``--min-held`` requests
(read from the replica itself: ``info().replica.in_flight``, or the ingress's own count in
``/v1/models``), that process gets SIGKILL. Recorded: how many it held, every request's status and
time, the longest stretch without any answer, and when Serve had the deployment back at its replica
count with a new process. Then, under the mixed load, a `serve deploy` of a config with other
batch sizes, thresholds and replica counts: the requests that failed while it rolled out.

The node kill (a whole Ray node at once, on a three-node cluster) is `make multinode`
(docs/benchmarks/multinode.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from benchmarks.loadgen import build_request, run_load
from benchmarks.multinode import analyse
from benchmarks.overload import front
from benchmarks.systems import wait_http
from benchmarks.workloads import load
from lensgraph import serve_env, settings
from lensgraph.devcluster import LocalCluster, free_port, serve_config_for_test

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# deployment -> (its role in /v1/models, the routes whose requests reach it)
VICTIMS = {
    "Classifier": ("classifier", ("classify",)),
    "FaceDetector": ("face_detector", ("faces",)),
    "LandmarkModel": ("landmarks", ("faces",)),
    "DigitClassifier": ("digits", ("digits",)),
    "Preprocessor": ("ingress", ("classify", "faces", "digits")),
}


def upgraded(config: dict) -> tuple[dict, list[str]]:
    """The changed config `serve deploy`ed under load: batch sizes, thresholds, replica counts."""
    new = copy.deepcopy(config)
    by_name = {d["name"]: d for d in new["applications"][0]["deployments"]}
    changes = []

    def user(name: str, key: str, value) -> None:
        old = by_name[name]["user_config"].get(key)
        by_name[name]["user_config"][key] = value
        changes.append(f"{name}.user_config.{key}: {old} -> {value}")

    user("Classifier", "max_batch_size", 8)
    user("FaceDetector", "score_threshold", 0.75)
    user("LandmarkModel", "max_batch_size", 16)
    user("Preprocessor", "max_in_flight", 24)
    changes.append(f"DigitClassifier.num_replicas: {by_name['DigitClassifier'].get('num_replicas', 1)} -> 2")
    by_name["DigitClassifier"]["num_replicas"] = 2  # 0.25 CPU more: the app then takes the whole 2.0
    return new, changes


class Target:
    """The running app: its URL, the cluster's REST API, and the replica a kill aims at."""

    def __init__(self, cluster: LocalCluster, port: int):
        self.cluster, self.url = cluster, f"http://{HOST}:{port}"
        self.client = httpx.Client(timeout=5)

    def models(self) -> dict:
        return self.client.get(self.url + "/v1/models").json()

    def holder(self, role: str) -> tuple[int | None, int]:
        """(pid, requests it holds) of ``role``'s replica; for the ingress, of whichever answered."""
        try:
            body = self.models()
        except (httpx.HTTPError, ValueError):
            return None, 0
        if role == "ingress":
            return body["ingress"]["pid"], body["ingress"]["in_flight"]
        model = next((m for m in body["models"] if m["name"] == role), {})
        replica = (model.get("info") or {}).get("replica", {})
        return replica.get("pid"), replica.get("in_flight", 0)

    def running(self, deployment: str) -> list[int]:
        return [r.get("pid") for r in self.cluster.replicas().get(deployment, []) if r.get("state") == "RUNNING"]


def kill_one(target: Target, deployment: str, requests: list[bytes], concurrency: int, seconds: float,
             min_held: int, replicas: int) -> dict:
    role, _ = VICTIMS[deployment]
    outcome: dict = {}
    loader = threading.Thread(target=lambda: outcome.update(
        result=run_load(HOST, int(target.url.rsplit(":", 1)[1]), requests, concurrency, seconds, warmup_s=0,
                        timeline=True)))
    t0 = time.perf_counter()
    loader.start()
    time.sleep(3)  # load established
    held, victim, best = 0, None, (None, 0)
    deadline = time.monotonic() + seconds / 3
    while time.monotonic() < deadline:
        pid, held = target.holder(role)
        if pid and held > best[1]:
            best = (pid, held)
        if pid and held >= min_held:
            victim = pid
            break
    if victim is None:
        victim, held = best  # never held min_held at once: kill it with the most it was seen holding
    kill_at = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    recovered_at = None
    while time.perf_counter() - t0 < seconds + 60:
        try:
            pids = target.running(deployment)
        except OSError:
            pids = []
        if len(pids) >= replicas and victim not in pids:
            recovered_at = time.perf_counter()
            break
        time.sleep(0.25)
    loader.join()
    result = outcome["result"]
    report = {"deployment": deployment, "routes": list(VICTIMS[deployment][1]), "held_at_kill": held,
              "min_held": min_held, "killed_pid": victim, "kill_at_s": round(kill_at - t0, 2),
              "recovered_after_kill_s": None if recovered_at is None else round(recovered_at - kill_at, 2),
              "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
              "connection_errors": sum(1 for _, s, _ in result.timeline if s == -1),
              "summary": result.summary()}
    report.update({k: v for k, v in analyse(result.timeline, t0, kill_at, recovered_at).items() if k != "per_second"})
    return report


def upgrade(target: Target, config: dict, path: Path, requests: list[bytes], concurrency: int, seconds: float) -> dict:
    new, changes = upgraded(config)
    path.write_text(yaml.safe_dump(new, sort_keys=False))
    outcome: dict = {}
    port = int(target.url.rsplit(":", 1)[1])
    loader = threading.Thread(target=lambda: outcome.update(
        result=run_load(HOST, port, requests, concurrency, seconds, warmup_s=0, timeline=True)))
    t0 = time.perf_counter()
    loader.start()
    time.sleep(seconds / 4)
    deploy_at = time.perf_counter()
    target.cluster.deploy(path)
    done_at = None
    while time.perf_counter() - t0 < seconds + 60:
        status = target.cluster.status().get("applications", {}).get("lensgraph", {})
        digits = len(target.running("DigitClassifier"))
        if status.get("status") == "RUNNING" and digits >= 2:
            done_at = time.perf_counter()
            break
        time.sleep(0.25)
    loader.join()
    settled = target.models()
    result = outcome["result"]
    report = {"changes": changes, "deploy_at_s": round(deploy_at - t0, 2),
              "running_after_deploy_s": None if done_at is None else round(done_at - deploy_at, 2),
              "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
              "connection_errors": sum(1 for _, s, _ in result.timeline if s == -1),
              "summary": result.summary(),
              "live_settings": {m["name"]: {"max_batch_size": (m.get("info") or {}).get("batching", {}).get("max_batch_size")}
                                for m in settled["models"]},
              "ingress_max_in_flight": settled["ingress"]["settings"].get("max_in_flight")}
    report.update({k: v for k, v in analyse(result.timeline, t0, deploy_at, done_at).items()
                   if k in ("requests", "failed", "longest_without_answer_s")})
    return report


def run(concurrency: int = 8, seconds: float = 24, min_held: int = 4, only: list[str] | None = None,
        upgrade_too: bool = True, front_door: bool = True) -> dict:
    env = {**serve_env.load(), "LENSGRAPH_MODEL_REPOSITORY": str(settings.model_repository_dir())}
    cluster = LocalCluster(head_cpus=2, env=env)
    port = free_port()
    workdir = Path(tempfile.mkdtemp())
    path = serve_config_for_test(ROOT / "serve_config.yaml", workdir / "serve.yaml", port)
    config = yaml.safe_load(path.read_text())
    replicas = {d["name"]: d.get("num_replicas", 1) for d in config["applications"][0]["deployments"]}
    assets = settings.assets_dir()
    workloads = {p: load(p, assets) for p in ("classify", "faces", "digits")}

    load_port = port  # where the load goes: the front door's port when there is one

    def requests_for(routes) -> list[bytes]:
        return [build_request(HOST, load_port, workloads[r].path, image, workloads[r].content_type)
                for r in routes for image in workloads[r].images]

    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.faults", "concurrency": concurrency, "load_seconds": seconds,
              "replicas": replicas, "kills": [], "upgrade": None, "front_door": front_door}
    door = contextlib.ExitStack()
    try:
        cluster.start_head()
        cluster.deploy(path)
        cluster.wait_running(timeout=300)
        wait_http(f"http://{HOST}:{port}/readyz", 120)
        load_port, _ = door.enter_context(front(port, front_door))
        target = Target(cluster, load_port)
        for deployment in only or VICTIMS:
            run_load(HOST, load_port, requests_for(VICTIMS[deployment][1]), concurrency, 2, warmup_s=0)  # warm
            kill = kill_one(target, deployment, requests_for(VICTIMS[deployment][1]), concurrency, seconds,
                            min_held, replicas[deployment])
            print(json.dumps({k: kill[k] for k in ("deployment", "held_at_kill", "failed", "statuses",
                                                   "longest_without_answer_s", "recovered_after_kill_s")}))
            report["kills"].append(kill)
            cluster.wait_running(timeout=120)
            wait_http(f"http://{HOST}:{port}/readyz", 120)
        if upgrade_too:
            report["upgrade"] = upgrade(target, config, workdir / "upgraded.yaml",
                                        requests_for(("classify", "faces", "digits")), concurrency, 2 * seconds)
            print(json.dumps({k: report["upgrade"][k] for k in ("failed", "statuses", "running_after_deploy_s")}))
    finally:
        door.close()
        cluster.stop()
    return report


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# Faults and upgrades under load", "",
             f"Reproduce: `{report['command']}` (`make faults`). Measured {report['date']} on this 2-core machine: "
             "one Ray node started as `make run` starts it (configs/serve.env), serve_config.yaml "
             f"{'behind the front door (lensgraph/front_door.py) ' if report.get('front_door') else 'without the front door '}"
             f"(replicas: {', '.join(f'{k} {v}' for k, v in report['replicas'].items())}), closed-loop load from "
             f"{report['concurrency']} connections for {report['load_seconds']:g} s per kill on the routes that use "
             "the victim. A replica is killed (SIGKILL) once it holds at least "
             f"{report['kills'][0]['min_held'] if report['kills'] else '?'} requests; 'held' is what it held then. "
             "A failed request is any answer but 200, or a dropped connection.", "",
             "| killed replica | routes | held | requests | failed | statuses | longest without any answer | back at its replica count |",
             "|---|---|---:|---:|---:|---|---:|---:|"]
    for k in report["kills"]:
        lines.append(f"| {k['deployment']} | {', '.join(k['routes'])} | {k['held_at_kill']} | {k['requests']} | "
                     f"{k['failed']} | {k['statuses']}{' + ' + str(k['connection_errors']) + ' dropped' if k['connection_errors'] else ''} | "
                     f"{k['longest_without_answer_s']} s | "
                     f"{'%s s' % k['recovered_after_kill_s'] if k['recovered_after_kill_s'] is not None else 'not within the run'} |")
    u = report.get("upgrade")
    if u:
        lines += ["", "## `serve deploy` of a changed config under load", "",
                  f"Mixed load (classify, faces, digits) from {report['concurrency']} connections for "
                  f"{2 * report['load_seconds']:g} s; at {u['deploy_at_s']} s `serve deploy` of a config with:", ""]
        lines += [f"- {c}" for c in u["changes"]]
        lines += ["", f"Requests: {u['requests']}, failed: **{u['failed']}** (statuses {u['statuses']}, "
                  f"{u['connection_errors']} dropped); longest time without any answer: {u['longest_without_answer_s']} s; "
                  f"the app RUNNING with 2 DigitClassifier replicas {u['running_after_deploy_s']} s after the deploy; "
                  f"throughput over the run {u['summary']['throughput_rps']} req/s, p99 {u['summary']['p99_ms']} ms.",
                  "", "Settings the replicas reported afterwards (`/v1/models`): "
                  + ", ".join(f"{name} {v}" for name, v in u["live_settings"].items())
                  + f", ingress max_in_flight {u['ingress_max_in_flight']}."]
    lines += ["", "A whole node killed (three-node cluster, `make multinode`): [multinode.md](multinode.md)."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=24, help="load per kill (the upgrade gets twice that)")
    parser.add_argument("--min-held", type=int, default=4)
    parser.add_argument("--only", nargs="*", choices=list(VICTIMS), help="kill only these (a quick check)")
    parser.add_argument("--no-upgrade", action="store_true")
    parser.add_argument("--no-front-door", action="store_true", help="load Serve's port directly, not make run's front door")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    report = run(args.concurrency, args.seconds, args.min_held, args.only, not args.no_upgrade, not args.no_front_door)
    report["command"] = " ".join(["python -m benchmarks.faults", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, args.out / "faults.md")
    print((args.out / "faults.md").read_text())


if __name__ == "__main__":
    main()
