"""The benchmark's peer systems classify like lensgraph (``make peers-check``; not part of ``make test``).

Each peer (BentoML, Triton through PyTriton) is started from its own virtual environment
(``.bench/venvs``, created on first use: a few minutes and about 0.4-0.6 GB each), sent the two
ImageNet sample photos, checked against lensgraph's own answer computed here with the same core
code, and stopped; no process of its tree may survive. Runs only with ``LENSGRAPH_PEERS=1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.peers,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("LENSGRAPH_PEERS") != "1",
                       reason="peers install their own venvs: run with LENSGRAPH_PEERS=1 (make peers-check)"),
]

PHOTOS = {"imagenet/n01440764_tench.JPEG": (0, "tench"), "imagenet/n01667114_mud_turtle.JPEG": (35, "mud turtle")}


@pytest.fixture(scope="module")
def photos(assets: Path) -> dict[str, bytes]:
    return {name: (assets / name).read_bytes() for name in PHOTOS}


@pytest.fixture(scope="module")
def lensgraph_answers(repository: Path, photos: dict[str, bytes]) -> dict[str, list[dict]]:
    """What lensgraph's /v1/classify computes for each photo, in-process with the same code."""
    from lensgraph.imaging.decode import decode_image
    from lensgraph.imaging.transforms import classifier_standard
    from lensgraph.inference.classifier import ClassifierRunner
    from lensgraph.repository.store import find_model
    from lensgraph.runtime.session import SessionConfig

    runner = ClassifierRunner(find_model(repository, "classifier"), SessionConfig(intra_op_threads=1))
    return {name: runner.run_batch([(classifier_standard(decode_image(data).pixels), 2, False)])[0]["predictions"]
            for name, data in photos.items()}


def _send_raw(port: int, request: bytes) -> tuple[int, dict]:
    """Send one request exactly as the load generator would (pre-built bytes) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, json.loads(reader.read(length))


def _cmdlines(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


@pytest.mark.parametrize("name", ["bentoml", "triton"])
def test_peer_classifies_like_lensgraph_and_stops_cleanly(name, repository, photos, lensgraph_answers):
    from benchmarks.peers import launch

    settings = launch.PeerSettings(repository=repository)
    with launch.peer_server(name, settings=settings) as running:
        peer = running.peer
        print(f"{name}: ready in {peer.startup_s} s on port {peer.port}")
        for photo, (class_id, label) in PHOTOS.items():
            got = launch.classify(peer, photos[photo])
            print(f"{name} {photo}: {got}")
            assert [p["class_id"] for p in got][0] == class_id
            assert got[0]["label"] == label
            want = lensgraph_answers[photo]
            assert [p["class_id"] for p in got] == [p["class_id"] for p in want]
            assert [p["confidence"] for p in got] == pytest.approx([p["confidence"] for p in want], abs=1e-5)

            # the pre-built request bytes the benchmark's load generator sends are accepted as they are
            status, payload = _send_raw(peer.port, running.request_for("127.0.0.1", peer.port, photos[photo]))
            assert status == 200, payload
            assert launch.parse_predictions(name, payload)[0]["class_id"] == class_id

        # ... and over one keep-alive connection, as the load generator sends them (4 requests, not a load test)
        from benchmarks.loadgen import run_load

        raw = [running.request_for("127.0.0.1", peer.port, photos[photo]) for photo in PHOTOS]
        result = run_load("127.0.0.1", peer.port, raw, concurrency=1, duration_s=30, warmup_s=0, max_requests=4)
        assert result.statuses == {200: 4} and result.failures == 0, (result.statuses, result.failures)

        # a few requests at once are batched together and each still gets its own answer
        order = list(PHOTOS) * 3
        with ThreadPoolExecutor(len(order)) as pool:
            answers = list(pool.map(lambda photo: launch.classify(peer, photos[photo]), order))
        assert [a[0]["class_id"] for a in answers] == [PHOTOS[photo][0] for photo in order]

        tree = launch.process_tree(peer.process.pid)
        if name == "triton":  # PyTriton runs tritonserver as a child process
            assert any("tritonserver" in c for c in _cmdlines(tree)), _cmdlines(tree)
        port = peer.port

    assert not [pid for pid in tree if launch._alive(pid)], _cmdlines(tree)
    pattern = f"--http-port {port}" if name == "triton" else f"--port {port}"
    leftover = subprocess.run(["pgrep", "-af", "--", pattern], capture_output=True, text=True).stdout.strip()
    assert not leftover, leftover
    assert peer.workspace is None or not peer.workspace.exists()
