"""``lensgraph run [CONFIG]``: ``serve run CONFIG`` under a supervisor that drains on SIGTERM.

What ``make run`` and the container's CMD use (lensgraph/serve_supervisor.py says why): a stop signal
drains in-flight requests and leaves no Ray or HAProxy process behind, so the next start is clean.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="serve run CONFIG; SIGTERM/SIGINT drain requests and stop every process")
    p.add_argument("config", nargs="?", default="serve_config.yaml", help="Serve config (default serve_config.yaml)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds to drain after a stop signal before the rest is killed (default 60)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lensgraph.serve_supervisor import Supervisor

    serve = Path(sys.executable).parent / "serve"
    command = [str(serve) if serve.exists() else (shutil.which("serve") or "serve"), "run", args.config]
    # A stale /tmp/ray/ray_current_cluster must not make serve run attach to a dead cluster.
    env = {**os.environ, "RAY_ADDRESS": os.environ.get("RAY_ADDRESS") or "local"}
    if env["RAY_ADDRESS"] == "local":
        # A one-machine Ray: its node address becomes 127.0.0.1, so the GCS, the raylet, the workers and
        # the dashboard listen on loopback only (Ray's switch for this is named after Windows and macOS,
        # where it is the default). Serve's HTTP port keeps http_options.host. Set it to 1 to opt out.
        env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return Supervisor(command, stop_timeout_s=args.stop_timeout, env=env).run()
