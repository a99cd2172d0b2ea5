"""``lensgraph run [CONFIG]``: ``serve run CONFIG`` under a supervisor that drains on SIGTERM.

What ``make run`` and the container's CMD use (lensgraph/serve_supervisor.py says why): a stop signal
drains in-flight requests and leaves no Ray or HAProxy process behind, so the next start is clean.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="serve run CONFIG; SIGTERM/SIGINT drain requests and stop every process")
    p.add_argument("config", nargs="?", default="serve_config.yaml", help="Serve config (default serve_config.yaml)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds to drain after a stop signal before the rest is killed (default 60)")
    p.add_argument("--no-front-door", action="store_true",
                   help="serve on Serve's own HTTP port, without the HAProxy that refuses overload cheaply")
    p.add_argument("--queue-timeout-ms", type=int, default=100,
                   help="how long a request over capacity may wait at the front door before its 503 (default 100)")
    p.add_argument("--latency-target-ms", type=int, default=None,
                   help="time a request may spend inside Serve; the front door's limit follows it "
                        "(lensgraph/front_door_limit.py; default its DEFAULT_TARGET_S, 0 = a fixed limit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lensgraph.serve_supervisor import Supervisor

    serve = Path(sys.executable).parent / "serve"
    config_path, front = Path(args.config), None
    if not args.no_front_door:
        config_path, front = _front_door(config_path, args.queue_timeout_ms, args.latency_target_ms)
    command = [str(serve) if serve.exists() else (shutil.which("serve") or "serve"), "run", str(config_path)]
    # A stale /tmp/ray/ray_current_cluster must not make serve run attach to a dead cluster.
    env = {**os.environ, "RAY_ADDRESS": os.environ.get("RAY_ADDRESS") or "local"}
    if env["RAY_ADDRESS"] == "local":
        # A one-machine Ray: its node address becomes 127.0.0.1, so the GCS, the raylet, the workers and
        # the dashboard listen on loopback only (Ray's switch for this is named after Windows and macOS,
        # where it is the default). Serve's HTTP port keeps http_options.host. Set it to 1 to opt out.
        env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return Supervisor(command, stop_timeout_s=args.stop_timeout, env=env, front_command=front).run()


def _front_door(config_path: Path, queue_timeout_ms: int, latency_target_ms: int | None) -> tuple[Path, list[str]]:
    """The Serve config moved behind the front door, and the front door's command (lensgraph/front_door.py);
    starts the thread that adapts its limit (lensgraph/front_door_limit.py) unless the target is 0."""
    import yaml

    from lensgraph import front_door, front_door_limit
    from lensgraph.devcluster import free_port

    config = yaml.safe_load(config_path.read_text())
    http = config.get("http_options", {})
    inner_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="lensgraph-run-"))
    inner = workdir / config_path.name
    inner.write_text(yaml.safe_dump(front_door.inner_config(config, inner_port), sort_keys=False))
    limit = front_door.capacity(config)
    target_s = front_door_limit.DEFAULT_TARGET_S if latency_target_ms is None else latency_target_ms / 1000
    admin_socket = workdir / "front_door.sock" if target_s > 0 else None
    haproxy_cfg = workdir / "front_door.cfg"
    haproxy_cfg.write_text(front_door.render(http.get("host", "0.0.0.0"), int(http.get("port", 8000)), inner_port,
                                             limit, queue_timeout_ms,
                                             request_timeout_s=int(http.get("request_timeout_s") or 120) + 5,
                                             admin_socket=admin_socket))
    adaptive = f", fewer while they would wait over {target_s:g} s" if admin_socket else ""
    print(f"lensgraph run: front door on {http.get('host', '0.0.0.0')}:{http.get('port', 8000)} "
          f"(at most {limit} requests inside Serve{adaptive}; Serve listens on 127.0.0.1:{inner_port})",
          file=sys.stderr, flush=True)
    if admin_socket:
        front_door_limit.Controller(admin_socket, limit, target_s,
                                    log=lambda line: print(f"lensgraph run: {line}", file=sys.stderr, flush=True)).start()
    return inner, [str(front_door.haproxy_binary()), "-db", "-f", str(haproxy_cfg)]
