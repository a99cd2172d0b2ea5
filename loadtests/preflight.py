"""Refuse to load-test a server that is not there: ``python loadtests/preflight.py HOST``.

Exits 0 when ``HOST/healthz`` answers 200, else prints why and how to start one and exits 2. Also
prints ``HOST/readyz``'s per-model states, and warns (without failing) when a model is not ready,
since every request to its route would then count as a failure. Standard library only.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: preflight.py HOST (e.g. http://127.0.0.1:8000)", file=sys.stderr)
        return 2
    host = argv[0].rstrip("/")
    if not host.startswith(("http://", "https://")):
        print(f"loadtest: HOST={host!r} is not an http(s) URL; pass e.g. HOST=http://127.0.0.1:8000 "
              "(zsh sets HOST to the machine's name)", file=sys.stderr)
        return 2
    try:
        status, body = _get(host + "/healthz", timeout=5)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        print(f"loadtest: no lensgraph server answers at {host}/healthz ({reason}).\n"
              f"Start one with `make run` (serves on http://127.0.0.1:8000) or point HOST= at a running one.",
              file=sys.stderr)
        return 2
    if status != 200:
        print(f"loadtest: {host}/healthz answered {status}, not 200: {body[:300]}", file=sys.stderr)
        return 2
    try:
        ready_status, ready_body = _get(host + "/readyz", timeout=10)
        models = json.loads(ready_body).get("models", {})
    except (OSError, ValueError):
        ready_status, models = None, {}
    print(f"loadtest: {host} is up; models: " + (", ".join(f"{k}={v}" for k, v in models.items()) or "unknown"))
    if ready_status != 200:
        print(f"loadtest: warning: {host}/readyz answered {ready_status}: requests to a model that is not "
              "ready will be counted as failures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
