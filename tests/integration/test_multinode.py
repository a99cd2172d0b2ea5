"""A head and two worker nodes on this machine; a worker killed under load; Serve must recover.

The same code as `make multinode` (benchmarks/multinode.py), with a shorter load and Ray's fast
node-failure detection so the test stays within its time budget.
"""

from __future__ import annotations

import pytest

from benchmarks.multinode import INGRESS, SPREAD, run

pytestmark = pytest.mark.serve


def test_a_killed_worker_node_is_replaced_and_the_service_keeps_answering(repository, assets):
    report = run(load_seconds=50, kill_after=10, concurrency=6, recover_timeout=120, fast_detection=True)
    before = report["placement_before"]
    assert set(before[INGRESS]) == {"head"}  # both ingress replicas
    for deployment in SPREAD:
        assert before[deployment] == ["worker-a", "worker-b"], (deployment, before)
    assert report["failed_before_kill"] == 0
    assert report["recovered_after_kill_s"] is not None, report["replica_counts_over_time"][-3:]
    for deployment in SPREAD:
        assert report["placement_after"][deployment] == ["worker-a", "worker-a"]
    assert report["ok_after_recovery"] > 0 and report["failed_after_recovery"] == 0, report["per_second"]
    assert report["requests"] > report["failed"]
