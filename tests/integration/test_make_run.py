"""`make run` on this machine: the whole service on port 8000, and the client against it.

The start-up time is printed and recorded in docs/serving.md; the wait is bounded generously here
because speed targets belong to benchmarks, not to tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lensgraph.devcluster import descendants, kill_all

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8000"
pytestmark = pytest.mark.serve


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def make_run(repository, assets, tmp_path_factory):
    if not _port_free(8000):
        pytest.fail("port 8000 is in use: stop whatever serves there (another `make run`?) and run again")
    log = tmp_path_factory.mktemp("make_run") / "make_run.log"
    env = {**os.environ, "LENSGRAPH_MODEL_REPOSITORY": str(repository), "LENSGRAPH_ASSETS": str(assets)}
    start = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = start + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(URL + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"make run did not become ready in 180 s:\n{log.read_text()[-3000:]}")
        elapsed = time.monotonic() - start
        print(f"\nmake run: ready on :8000 after {elapsed:.1f} s")
        yield elapsed
    finally:
        tree = descendants([process.pid])
        try:
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: serve run shuts Serve and Ray down
            process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_all(tree)


def test_make_run_serves_on_8000_and_the_client_works(make_run, assets):
    assert make_run > 0
    done = subprocess.run(
        [sys.executable, "-m", "lensgraph", "client", "faces", str(assets / "faces/obama.jpg"), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["faces"]) == 1
    table = subprocess.run([sys.executable, "-m", "lensgraph", "client", "models"],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "classifier" in table.stdout and "available" in table.stdout
