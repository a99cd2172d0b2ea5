"""A private Ray cluster on this machine, driven through the ``ray``/``serve`` CLIs.

Tests and the multi-node demo need what a user's cluster has: a head node with the dashboard
(``serve deploy`` and live config updates go through it), worker nodes that can be killed, and
clean teardown. Every node is its own ``ray start --block`` process group on 127.0.0.1 with
token authentication, so nothing outside the loopback interface is involved and teardown
kills exactly what was started. No Ray import: only subprocesses.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml


# Ports we choose live below the kernel's ephemeral range (32768+ here) and above Ray's worker
# ports (10002-19999): a port the kernel hands out as "free" is ephemeral, so a Ray process started
# after we picked it can be given the same one (a CI run lost the HTTP port that way).
_OWN_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port free on 127.0.0.1 now that no Ray process will be handed by the kernel later."""
    for port in random.sample(_OWN_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_OWN_PORTS}")


def descendants(roots: list[int]) -> set[int]:
    """Every live process under ``roots``, including ones that left the process group (HAProxy)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def with_environment(name: str, value: str) -> set[int]:
    """Live processes whose environment holds ``name=value``: a cluster's, by its unique auth token, even
    those that were re-parented to init when their parent died (Serve's HAProxy during a fast stop)."""
    wanted = f"{name}={value}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                found.add(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    found.discard(os.getpid())
    return found


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class LocalCluster:
    head_cpus: float = 2
    env: dict[str, str] = field(default_factory=dict)
    head_resources: dict[str, float] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.metrics_port = free_port()  # the head's Prometheus endpoint (Ray's and Serve's metrics)
        self.workdir = Path(tempfile.mkdtemp(prefix="lg-ray-"))
        self.token = secrets.token_hex(16)
        self._env = {
            **os.environ,
            **self.env,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str]) -> Node:
        log = self.workdir / f"{name}.log"
        handle = open(log, "wb")
        # Serve's HAProxy binds fixed stats/metrics ports by default: give every node its own.
        env = {**self._env, "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
               "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
        process = subprocess.Popen(
            [_bin("ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
            stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        node = Node(name, process, log)
        self.nodes.append(node)
        return node

    def start_head(self, timeout: float = 90) -> Node:
        import json

        args = [
            "--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
            "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--num-cpus={self.head_cpus}",
            f"--temp-dir={self.workdir / 'ray'}", f"--metrics-export-port={self.metrics_port}",
        ]
        if self.head_resources:
            args.append(f"--resources={json.dumps(self.head_resources)}")
        head = self._start("head", args)
        self._wait(lambda: self._dashboard_up(), timeout, "the head node's dashboard", head)
        return head

    def add_worker(self, name: str, num_cpus: float, resources: dict[str, float] | None = None,
                   labels: dict[str, str] | None = None) -> Node:
        import json

        args = [f"--address={self.address}", f"--num-cpus={num_cpus}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        if labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
        return self._start(name, args)

    def api(self, path: str, timeout: float = 10) -> dict:
        """GET a dashboard REST path (e.g. /api/serve/applications/, /api/v0/nodes) as JSON."""
        import json

        request = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read())

    def alive_nodes(self) -> list[dict]:
        """Ray's alive nodes (state API): node_id, resources_total, labels, ..."""
        body = self.api("/api/v0/nodes?limit=100&detail=true")
        return [n for n in body["data"]["result"]["result"] if n.get("state") == "ALIVE"]

    def replicas(self, app: str = "lensgraph") -> dict[str, list[dict]]:
        """deployment -> its replicas (state, node_id, pid) from Serve's REST API."""
        details = self.api("/api/serve/applications/")
        deployments = details.get("applications", {}).get(app, {}).get("deployments", {})
        return {name: d.get("replicas", []) for name, d in deployments.items()}

    def _dashboard_up(self) -> bool:
        request = urllib.request.Request(self.dashboard + "/api/version",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return True  # it answered: up, whatever it thinks of the request
        except OSError:
            return False

    def _wait(self, ready, timeout: float, what: str, node: Node | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if node is not None and not node.alive:
                raise RuntimeError(f"{what}: process exited; log:\n{node.log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready after {timeout:.0f}s")

    def serve(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([_bin("serve"), *args, "--address", self.dashboard], env=self._env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"serve {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def deploy(self, config: Path) -> None:
        self.serve("deploy", str(config))

    def status(self) -> dict:
        return yaml.safe_load(self.serve("status")) or {}

    def wait_running(self, app: str = "lensgraph", timeout: float = 180) -> dict:
        state: dict = {}

        def running() -> bool:
            nonlocal state
            state = self.status()
            status = state.get("applications", {}).get(app, {}).get("status")
            if status == "DEPLOY_FAILED":
                raise RuntimeError(f"application {app} failed to deploy: {state['applications'][app].get('message')}")
            return status == "RUNNING"

        self._wait(running, timeout, f"application {app}")
        return state

    def stop(self) -> None:
        stragglers = descendants([n.process.pid for n in self.nodes])
        for node in reversed(self.nodes):
            node.kill(signal.SIGTERM)
        # Ray's own stop is given its time: cut to 4 s, Serve's HAProxy was killed mid-reload and its state in
        # /tmp/haproxy-serve crashed the next cluster's HAProxy (CI, 2026-12-04). What outlives it is killed.
        deadline = time.monotonic() + 15
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            node.kill(signal.SIGKILL)  # children in the group that outlived the parent
        for node in self.nodes:
            try:
                node.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        kill_all(stragglers | with_environment("RAY_AUTH_TOKEN", self.token))
        shutil.rmtree(self.workdir, ignore_errors=True)


def serve_config_for_test(source: Path, target: Path, port: int, overrides: dict | None = None,
                          edit=None) -> Path:
    """A copy of a serve config bound to 127.0.0.1:<port>, with per-deployment overrides and, when given,
    ``edit(config)`` applied to the parsed config (to add served models, say)."""
    config = yaml.safe_load(source.read_text())
    config["http_options"] = {**config.get("http_options", {}), "host": "127.0.0.1", "port": port}
    for app in config.get("applications", []):
        for deployment in app.get("deployments", []):
            deployment.update((overrides or {}).get(deployment["name"], {}))
    if edit is not None:
        edit(config)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
