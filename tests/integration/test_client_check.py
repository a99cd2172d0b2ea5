"""``lensgraph client check`` against a real app: every preset check passes (exit 0), and a URL where nothing
listens fails them all (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.serve


def _check(url: str, assets, *more: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LENSGRAPH_ASSETS": str(assets)}
    return subprocess.run([sys.executable, "-m", "lensgraph", "client", "check", "--url", url, *more],
                          capture_output=True, text=True, timeout=600, env=env)


def test_client_check_passes_on_a_real_app(server, assets):
    done = _check(server.url, assets, "--requests", "10", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["passed"] is True
    failed = [c for c in body["checks"] if c["status"] != "PASS"]
    assert not failed, failed
    latency = next(c for c in body["checks"] if c["name"] == "classify latency")
    assert latency["requests"] == 10 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    table = _check(server.url, assets, "--requests", "3")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "FAIL" not in table.stdout and table.stdout.count("PASS") == len(body["checks"])


def test_client_check_fails_against_a_wrong_url(assets):
    from lensgraph.devcluster import free_port

    done = _check(f"http://127.0.0.1:{free_port()}", assets)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "PASS" not in done.stdout
