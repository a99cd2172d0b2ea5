"""A real multi-node Ray cluster on one machine: a head and two worker nodes, lensgraph spread over
them, load running, one worker node killed: do the replicas come back and does the service answer?

    python -m benchmarks.multinode            # or: make multinode; writes docs/benchmarks/multinode.{json,md}

Three ``ray start`` processes on 127.0.0.1 (lensgraph.devcluster): the head holds the controller,
the HTTP proxy and the Preprocessor, the ingress (custom resource ``lensgraph_head``); the workers
``worker-a`` and ``worker-b`` (resource ``lensgraph_worker``, label ``lensgraph/node``) hold two
replicas of every model deployment, which Serve spreads over them. Under closed-loop load
(classify, faces and digits requests mixed) worker-b is killed with SIGKILL, its whole process
tree at once, as a crashed machine would vanish. Recorded: where each replica ran before and
after, every request's time and status, how many failed and over what window, and when Serve
had every deployment back at its target replica count on the surviving node.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.loadgen import build_request, run_load
from benchmarks.systems import wait_http
from benchmarks.workloads import load
from lensgraph import serve_env, settings
from lensgraph.devcluster import LocalCluster, descendants, free_port, kill_all, serve_config_for_test

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WORKERS = ("worker-a", "worker-b")
INGRESS = "Preprocessor"
SPREAD = ("FaceDetector", "LandmarkModel", "Classifier", "DigitClassifier")


def multinode_config(source: Path, target: Path, port: int) -> Path:
    """serve_config.yaml for this cluster: proxy on the head only (all nodes share 127.0.0.1), the
    ingress (the Preprocessor) on the head, two replicas of every model deployment on the workers."""
    overrides = {INGRESS: {"ray_actor_options": {"num_cpus": 0.25, "resources": {"lensgraph_head": 0.01}}}}
    for name in SPREAD:
        overrides[name] = {"num_replicas": 2}
    serve_config_for_test(source, target, port, overrides)
    config = yaml.safe_load(target.read_text())
    config["proxy_location"] = "HeadOnly"
    for d in config["applications"][0]["deployments"]:
        if d["name"] in SPREAD:
            d["ray_actor_options"] = {**d.get("ray_actor_options", {}), "resources": {"lensgraph_worker": 0.01}}
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def placement(cluster: LocalCluster, names: dict[str, str]) -> dict[str, list[str]]:
    """deployment -> the node name of each RUNNING replica."""
    return {d: sorted(names.get(r.get("node_id"), "?") for r in replicas if r.get("state") == "RUNNING")
            for d, replicas in cluster.replicas().items()}


def node_names(cluster: LocalCluster) -> dict[str, str]:
    out = {}
    for node in cluster.alive_nodes():
        labels = node.get("labels") or {}
        out[node["node_id"]] = labels.get("lensgraph/node") or ("head" if node.get("is_head_node") else "?")
    return out


def wait_nodes(cluster: LocalCluster, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(cluster.alive_nodes()) >= count:
            return
        time.sleep(1)
    logs = "\n".join(f"--- {n.name} (process {'alive' if n.alive else 'exited'}):\n{n.log.read_text()[-1500:]}"
                     for n in cluster.nodes)
    raise TimeoutError(f"fewer than {count} Ray nodes alive after {timeout:.0f}s:\n{logs}")


def start_worker(cluster: LocalCluster, name: str, expected_nodes: int, attempts: int = 2) -> None:
    """One worker at a time, retried once: on 2 busy cores a raylet can miss `ray start`'s fixed
    30 s registration deadline ("The current node timed out during startup"), which is no failure
    of what is tested here."""
    for attempt in range(attempts):
        node = cluster.add_worker(name, num_cpus=4, resources={"lensgraph_worker": 100}, labels={"lensgraph/node": name})
        try:
            wait_nodes(cluster, expected_nodes, timeout=90)
            return
        except TimeoutError:
            if node.alive or attempt == attempts - 1:
                raise
            cluster.nodes.remove(node)


# Ray's node failure detection: the GCS health-checks every raylet; these make it declare a dead
# node after ~3 s instead of Ray's defaults (period 3 s, threshold 5 failures, timeout 10 s).
FAST_DETECTION = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                  "RAY_health_check_failure_threshold": "3"}


def run(load_seconds: float = 60, kill_after: float = 15, concurrency: int = 8, recover_timeout: float = 180,
        fast_detection: bool = False) -> dict:
    env = {**serve_env.load(), **(FAST_DETECTION if fast_detection else {})}
    env["LENSGRAPH_MODEL_REPOSITORY"] = str(settings.model_repository_dir())
    cluster = LocalCluster(head_cpus=1, env=env, head_resources={"lensgraph_head": 1})
    port = free_port()
    config = multinode_config(ROOT / "serve_config.yaml", Path(tempfile.mkdtemp()) / "serve.yaml", port)
    assets = settings.assets_dir()
    workloads = {p: load(p, assets) for p in ("classify", "faces", "digits")}
    # a mix: one classify, one faces, two digits per cycle
    mix = [("classify", 0), ("digits", 0), ("faces", 0), ("digits", 1)]
    requests = [build_request(HOST, port, workloads[p].path, workloads[p].images[i], workloads[p].content_type)
                for p, i in mix]
    report: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": "python -m benchmarks.multinode", "concurrency": concurrency,
                    "load_seconds": load_seconds, "kill_after_s": kill_after,
                    "ray_failure_detection": FAST_DETECTION if fast_detection else "Ray defaults"}
    try:
        cluster.start_head()
        for count, name in enumerate(WORKERS, start=2):
            start_worker(cluster, name, count)
        cluster.deploy(config)
        cluster.wait_running(timeout=300)
        wait_http(f"http://{HOST}:{port}/readyz", 120)
        names = node_names(cluster)
        report["nodes"] = sorted(names.values())
        report["placement_before"] = placement(cluster, names)

        outcome: dict = {}
        loader = threading.Thread(target=lambda: outcome.update(
            result=run_load(HOST, port, requests, concurrency, load_seconds, warmup_s=0, timeline=True)))
        t0 = time.perf_counter()
        loader.start()
        time.sleep(kill_after)
        victim = next(n for n in cluster.nodes if n.name == "worker-b")
        tree = descendants([victim.process.pid]) | {victim.process.pid}
        kill_at = time.perf_counter()
        kill_all(tree)  # the whole node at once: raylet, its workers, the replicas
        victim.kill(signal.SIGKILL)
        report["killed"] = {"node": "worker-b", "processes": len(tree), "at_s": round(kill_at - t0, 2)}

        # Recovery: every deployment back at its target count, none on the dead node.
        recovered_at, observed = None, []
        deadline = time.monotonic() + recover_timeout
        while time.monotonic() < deadline:
            try:
                where = placement(cluster, {**names, **node_names(cluster)})  # the dead node keeps its name
            except OSError:
                time.sleep(0.5)
                continue
            counts = {d: len(v) for d, v in where.items()}
            observed.append({"t_s": round(time.perf_counter() - t0, 2), "running": counts})
            if all(counts.get(d, 0) >= 2 for d in SPREAD) and "worker-b" not in sum(where.values(), []):
                recovered_at = time.perf_counter()
                report["placement_after"] = where
                break
            time.sleep(0.5)
        loader.join()
        result = outcome["result"]
        report["recovered_after_kill_s"] = None if recovered_at is None else round(recovered_at - kill_at, 2)
        report["replica_counts_over_time"] = observed
        report.update(analyse(result.timeline, t0, kill_at, recovered_at))
        report["summary"] = result.summary()
        report["statuses"] = {str(k): v for k, v in sorted(result.statuses.items())}
    finally:
        cluster.stop()
    return report


def analyse(timeline: list[tuple[float, int, float]], t0: float, kill_at: float, recovered_at: float | None) -> dict:
    failed = [t for t, status, _ in timeline if status != 200]
    after_kill = [(t, s) for t, s, _ in timeline if t >= kill_at]
    before = [(t, s) for t, s, _ in timeline if t < kill_at]
    last = int(max(t for t, _, _ in timeline) - t0) if timeline else 0
    per_second: dict[int, list[int]] = {k: [0, 0] for k in range(last + 1)}
    for t, status, _ in timeline:
        per_second[int(t - t0)][0 if status == 200 else 1] += 1
    answered = sorted(t for t, status, _ in timeline if status == 200)
    # The longest stretch after the kill with no answer at all: requests held by dead replicas hang
    # until Ray declares the node dead, which failure counts alone would not show.
    marks = [kill_at] + [t for t in answered if t >= kill_at]
    gaps = [(b - a, a) for a, b in zip(marks, marks[1:])]
    stall, stall_from = max(gaps) if gaps else (0.0, kill_at)
    return {
        "requests": len(timeline),
        "failed": len(failed),
        "failed_before_kill": sum(1 for _, s in before if s != 200),
        "failed_after_kill": sum(1 for _, s in after_kill if s != 200),
        "failure_window_s": round(max(failed) - min(failed), 2) if failed else 0.0,
        "first_failure_after_kill_s": round(min(failed) - kill_at, 2) if failed else None,
        "last_failure_after_kill_s": round(max(failed) - kill_at, 2) if failed else None,
        "ok_after_recovery": None if recovered_at is None else sum(1 for t, s in after_kill if t >= recovered_at and s == 200),
        "failed_after_recovery": None if recovered_at is None else sum(1 for t, s in after_kill if t >= recovered_at and s != 200),
        "longest_without_answer_s": round(stall, 2),
        "longest_without_answer_from_s": round(stall_from - kill_at, 2),
        "per_second": {str(k): {"ok": v[0], "failed": v[1]} for k, v in sorted(per_second.items())},
    }


def write_markdown(report: dict, path: Path) -> None:
    s = report["summary"]
    lines = [f"## Ray's node failure detection: {'fast (' + ', '.join(f'{k}={v}' for k, v in report['ray_failure_detection'].items()) + ')' if isinstance(report['ray_failure_detection'], dict) else 'Ray defaults'}", "",
             f"Reproduce: `{report['command']}` (`make multinode`). Measured {report['date']}: a head and two worker "
             "nodes (`ray start` each, on 127.0.0.1, 2 physical cores shared), closed-loop load of "
             f"{report['concurrency']} connections (classify, faces and two digits per cycle) for "
             f"{report['load_seconds']:g} s; worker-b killed (SIGKILL to its {report['killed']['processes']} processes) "
             f"{report['killed']['at_s']:g} s in.", "",
             "| | |", "|---|---|",
             f"| nodes | {', '.join(report['nodes'])} |",
             f"| requests / failed | {report['requests']} / {report['failed']} (before the kill: {report['failed_before_kill']}) |",
             f"| failures from / to (s after the kill) | {report['first_failure_after_kill_s']} / {report['last_failure_after_kill_s']} |",
             f"| longest time without any answer after the kill | {report['longest_without_answer_s']} s "
             f"(from {report['longest_without_answer_from_s']} s after it) |",
             f"| every deployment back at 2 running replicas, none on worker-b | {report['recovered_after_kill_s']} s after the kill |",
             f"| after that: answered / failed | {report['ok_after_recovery']} / {report['failed_after_recovery']} |",
             f"| throughput over the run, p50 / p99 | {s['throughput_rps']} req/s, {s['p50_ms']} / {s['p99_ms']} ms |",
             f"| statuses | {report['statuses']} |", "",
             "Where the replicas ran (`GET /api/serve/applications/`, node of each RUNNING replica):", "",
             "| deployment | before | after |", "|---|---|---|"]
    after = report.get("placement_after", {})
    for d, nodes in sorted(report["placement_before"].items()):
        lines.append(f"| {d} | {', '.join(nodes)} | {', '.join(after.get(d, []))} |")
    lines += ["", "Answered and failed requests per second (the kill at "
              f"{report['killed']['at_s']:g} s):", "", "| second | answered | failed |", "|---:|---:|---:|"]
    for second, v in report["per_second"].items():
        lines.append(f"| {second} | {v['ok']} | {v['failed']} |")
    with open(path, "a") as out:
        out.write("\n".join(lines) + "\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--kill-after", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    reports = [run(args.load_seconds, args.kill_after, args.concurrency, fast_detection=fast)
               for fast in (False, True)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multinode.json").write_text(json.dumps(reports, indent=1) + "\n")
    path = args.out / "multinode.md"
    path.write_text("# Multi-node on one machine: a worker node killed under load\n\n"
                    "Two runs of the same experiment: with Ray's default node failure detection, then with a faster one.\n\n")
    for report in reports:
        write_markdown(report, path)
    print(path.read_text())


if __name__ == "__main__":
    main()
