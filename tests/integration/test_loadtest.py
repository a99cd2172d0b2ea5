"""The locust load tests against a real Ray Serve application: short runs (seconds), real images.

These check the tooling (every route is hit, the body checks pass on real answers and fail on
wrong ones, the CSV, the summary, the shapes, `make loadtest`), not the service's speed.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lensgraph.devcluster import free_port

pytestmark = pytest.mark.serve

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
LOCUST = Path(sys.executable).parent / "locust"
MIXED_ROUTES = {"/v1/classify", "/v1/digits", "/v1/faces", "/v1/landmarks"}


def _locust(host: str, prefix: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [str(LOCUST), "-f", "loadtests/locustfile.py", "--headless", "--host", host,
               "--csv", str(prefix), "--only-summary", *args]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=180)


def _make_loadtest(tmp_path: Path, *variables: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # -o: take the installed venv as it is (never reinstall from a test).
    command = ["make", "-o", f"{VENV}/.stamp-setup", "loadtest", f"VENV={VENV}", f"REPORTS={tmp_path}", *variables]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=180)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_mixed_user_hits_every_route_without_a_failure(server, assets, tmp_path):
    prefix = tmp_path / "loadtest"
    done = _locust(server.url, prefix, "-u", "2", "-r", "2", "-t", "8s", "--html", str(tmp_path / "loadtest.html"),
                   "MixedUser", env={"LENSGRAPH_ASSETS": str(assets)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    stats = {row["Name"]: row for row in _rows(Path(f"{prefix}_stats.csv"))}
    assert set(stats) == MIXED_ROUTES | {"Aggregated"}
    counts = {route: int(stats[route]["Request Count"]) for route in MIXED_ROUTES}
    assert all(count > 0 for count in counts.values()), counts
    assert {route: int(stats[route]["Failure Count"]) for route in MIXED_ROUTES} == dict.fromkeys(MIXED_ROUTES, 0)
    total = int(stats["Aggregated"]["Request Count"])
    assert total == sum(counts.values()) and int(stats["Aggregated"]["Failure Count"]) == 0
    assert _rows(Path(f"{prefix}_failures.csv")) == []
    # Weights 4 : 3 : 2 : 1 over a hundred or more requests: classify is the most frequent, landmarks the least.
    assert total >= 40, counts
    assert max(counts, key=counts.get) == "/v1/classify" and min(counts, key=counts.get) == "/v1/landmarks", counts
    # The CSV holds the final numbers, the same total locust printed (its own writer lags by up to a second).
    assert re.search(rf"Aggregated\s+{total}\s", output), output[-3000:]
    # -t 8s is honoured (the history samples once a second).
    stamps = [int(row["Timestamp"]) for row in _rows(Path(f"{prefix}_stats_history.csv"))]
    assert 6 <= max(stamps) - min(stamps) <= 12, stamps
    assert (tmp_path / "loadtest.html").stat().st_size > 10_000

    summary = subprocess.run([sys.executable, "loadtests/summarize.py", "--prefix", str(prefix), "--title", "test"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    text = (tmp_path / "loadtest_summary.md").read_text()
    assert text in summary.stdout
    for route in MIXED_ROUTES:
        assert f"| POST {route} | {counts[route]} | 0 (0.0%) |" in text
    assert f"| **all** | {total} | 0 (0.0%) |" in text and "Failures" not in text


def test_wrong_answers_are_failures_and_reach_the_summary(server, assets, tmp_path):
    # Under a path prefix every route answers 404: each request must be counted as failed.
    prefix = tmp_path / "loadtest"
    done = _locust(server.url + "/nope", prefix, "-u", "1", "-r", "1", "-t", "2s", "LandmarksUser",
                   env={"LENSGRAPH_ASSETS": str(assets)})
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    stats = {row["Name"]: row for row in _rows(Path(f"{prefix}_stats.csv"))}
    requests = int(stats["/v1/landmarks"]["Request Count"])
    assert requests > 0 and int(stats["/v1/landmarks"]["Failure Count"]) == requests
    failures = _rows(Path(f"{prefix}_failures.csv"))
    assert len(failures) == 1 and "HTTP 404" in failures[0]["Error"] and int(failures[0]["Occurrences"]) == requests
    summary = subprocess.run([sys.executable, "loadtests/summarize.py", "--prefix", str(prefix)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    assert f"| POST /v1/landmarks | {requests} | {requests} (100.0%) |" in summary.stdout
    assert "## Failures" in summary.stdout and "HTTP 404" in summary.stdout


def test_make_loadtest_with_the_step_shape(server, assets, tmp_path):
    # Levels 1, 2, 1 users, 2 s each: the shape ends the run (before DURATION).
    done = _make_loadtest(tmp_path, f"HOST={server.url}", "USERS=2", "SPAWN_RATE=2", "DURATION=30s", "SHAPE=step",
                          env={"LENSGRAPH_ASSETS": str(assets), "LOADTEST_STEP_USERS": "1",
                               "LOADTEST_STEP_SECONDS": "2"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    users = [int(row["User Count"]) for row in _rows(tmp_path / "loadtest_stats_history.csv")]
    peak = users.index(max(users))
    assert max(users) == 2 and 1 in users[:peak] and 1 in users[peak:], users
    assert users[: peak + 1] == sorted(users[: peak + 1]) and users[peak:] == sorted(users[peak:], reverse=True)
    assert len(users) <= 12, users  # about 6 s, not the 30 s of DURATION
    stats = {row["Name"]: row for row in _rows(tmp_path / "loadtest_stats.csv")}
    assert set(stats) == MIXED_ROUTES | {"Aggregated"} and int(stats["Aggregated"]["Failure Count"]) == 0
    summary = (tmp_path / "loadtest_summary.md").read_text()
    assert "peak 2 users" in summary and "SHAPE=step" in summary and "USER_CLASS=MixedUser" in summary
    assert (tmp_path / "loadtest.html").exists()


def test_make_loadtest_without_a_server_fails_clearly(tmp_path):
    host = f"http://127.0.0.1:{free_port()}"
    reports = tmp_path / "reports"
    done = _make_loadtest(reports, f"HOST={host}", "DURATION=5s")
    assert done.returncode != 0
    assert f"no lensgraph server answers at {host}/healthz" in done.stderr
    assert not reports.exists()
