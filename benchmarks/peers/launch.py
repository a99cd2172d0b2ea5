"""Start, probe and stop the peer systems (BentoML, Triton via PyTriton), each in its own venv.

    with peer_server("triton") as running:          # what benchmarks/compare.py uses
        raw = running.request_for("127.0.0.1", running.port, jpeg_bytes)   # bytes for loadgen.run_load

    peer = start_peer("bentoml", port=3001)         # or by hand
    classify(peer, jpeg_bytes)                      # [{"class_id": 0, "label": "tench", "confidence": 0.90}, ...]
    stop_peer(peer)

Each peer is started as a subprocess in a new session (its own process group) from its virtual
environment (``venvs.ensure_venv``, created on first use), with a log under ``.bench/logs``.
``start_peer`` returns once the peer has answered a real classification request (a JPEG made here)
and fails with the log's tail when it exits or does not answer in time. ``stop_peer`` sends
SIGTERM to the process group, waits, then SIGKILLs whatever is left of the process tree recorded
before (BentoML's workers run in sessions of their own; Triton's ``tritonserver`` and its Python
stub are in the group) and waits until none of those processes exist.

Requests (one image per request, the image's encoded bytes as sent to lensgraph's /v1/classify):

- bentoml: ``POST /classify``, ``Content-Type: image/jpeg``, the image as the raw body: exactly
  ``loadgen.build_request(host, port, "/classify", image, "image/jpeg")``.
- triton: ``POST /v2/models/classifier/infer`` (KServe v2 with Triton's binary tensor data
  extension): a JSON header declaring one BYTES input ``image`` of shape [1, 1] whose binary data
  follows it (a uint32 little-endian length, then the image), and the header
  ``Inference-Header-Content-Length`` saying where the JSON ends. ``loadgen.build_request`` takes a
  body and one content type; the extra header is inserted into the request it builds (see
  ``triton_request``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.loadgen import build_request
from benchmarks.peers import venvs
from lensgraph.devcluster import descendants, free_port

ROOT = venvs.ROOT
PEERS_DIR = Path(__file__).resolve().parent
LOGS = ROOT / ".bench" / "logs"
RUN = ROOT / ".bench" / "run"
NAMES = ("bentoml", "triton")
HOST = "127.0.0.1"

BENTOML_PATH = "/classify"
TRITON_MODEL = "classifier"
TRITON_PATH = f"/v2/models/{TRITON_MODEL}/infer"
# Log lines after which a peer will not become ready, though its process may stay up (BentoML's
# arbiter keeps running when its worker fails to start): start_peer fails at once on them.
FATAL_LOG_LINES = {"bentoml": ("Application startup failed",), "triton": ("failed to load 'classifier'",)}


@dataclass(frozen=True)
class PeerSettings:
    """The knobs both peers share; defaults follow lensgraph's Classifier deployment (serve_config.yaml)."""

    max_batch_size: int = 16
    batch_delay_ms: float = 4.0  # Triton: the dynamic batcher's max queue delay (lensgraph: batch_wait_timeout_s 0.004)
    bentoml_max_latency_ms: int = 10_000  # BentoML: adaptive batching's latency target (no fixed wait window)
    threads: int = 2  # ONNX Runtime intra-op threads
    top_k: int = 2
    bentoml_workers: int = 1
    repository: Path | None = None  # default: $LENSGRAPH_MODEL_REPOSITORY or <repo>/model_repository

    def model_repository(self) -> Path:
        return Path(self.repository or os.environ.get("LENSGRAPH_MODEL_REPOSITORY") or ROOT / "model_repository")


@dataclass
class PeerProcess:
    name: str
    port: int
    process: subprocess.Popen
    log: Path
    settings: PeerSettings
    workspace: Path | None = None
    startup_s: float = 0.0

    @property
    def roots(self) -> list[int]:
        return [self.process.pid]


@dataclass
class RunningPeer:
    """What benchmarks/compare.py reads from a running system (the fields of ``systems.Running``)."""

    system: str
    port: int
    roots: list[int]
    pipelines: tuple[str, ...] = ("classify",)
    request_for: Callable[[str, int, bytes], bytes] | None = None
    peer: PeerProcess | None = field(default=None, repr=False)


# --- requests -------------------------------------------------------------------------------------


def bentoml_request(host: str, port: int, image: bytes) -> bytes:
    return build_request(host, port, BENTOML_PATH, image, "image/jpeg")


def triton_body(image: bytes) -> tuple[bytes, int]:
    """(body, length of its JSON header) of a KServe v2 request with one BYTES input in binary form."""
    header = json.dumps(
        {"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                     "parameters": {"binary_data_size": 4 + len(image)}}]},
        separators=(",", ":"),
    ).encode()
    return header + struct.pack("<I", len(image)) + image, len(header)


def triton_request(host: str, port: int, image: bytes) -> bytes:
    body, header_length = triton_body(image)
    raw = build_request(host, port, TRITON_PATH, body, "application/octet-stream")
    head, sep, rest = raw.partition(b"\r\n\r\n")
    return head + f"\r\nInference-Header-Content-Length: {header_length}".encode() + sep + rest


def request_for(name: str) -> Callable[[str, int, bytes], bytes]:
    """(host, port, image bytes) -> the raw HTTP/1.1 request that classifies it on peer ``name``."""
    return {"bentoml": bentoml_request, "triton": triton_request}[_check_name(name)]


def parse_predictions(name: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A peer's JSON answer -> ``[{"class_id", "label", "confidence"}, ...]``, best first."""
    if name == "bentoml":
        return [{"class_id": int(p["class_id"]), "label": p["label"], "confidence": float(p["confidence"])}
                for p in payload["predictions"]]
    outputs = {o["name"]: o["data"] for o in payload["outputs"]}
    return [{"class_id": int(c), "label": str(lbl), "confidence": float(p)}
            for c, lbl, p in zip(outputs["class_id"], outputs["label"], outputs["confidence"])]


def post(name: str, port: int, image: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send one classification request (the same bytes ``request_for`` builds) and return (status, body)."""
    if name == "bentoml":
        path, body, headers = BENTOML_PATH, image, {"Content-Type": "image/jpeg"}
    else:
        body, header_length = triton_body(image)
        path, headers = TRITON_PATH, {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(header_length)}
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def classify(peer: PeerProcess, image: bytes, timeout: float = 30.0) -> list[dict[str, Any]]:
    status, body = post(peer.name, peer.port, image, timeout)
    if status != 200:
        raise RuntimeError(f"{peer.name} answered {status}: {body[:500]!r}")
    return parse_predictions(peer.name, json.loads(body))


def probe_image() -> bytes:
    """A small JPEG made here, for the readiness probe (no assets needed)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:240, 0:320]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# --- processes ------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(NAMES)}")
    return name


def _libdir(python: Path) -> str:
    """The directory of the venv interpreter's own libpython (a venv shares its base interpreter's)."""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _command(name: str, port: int, settings: PeerSettings, workspace: Path | None) -> tuple[list[str], dict[str, str]]:
    venv = venvs.ensure_venv(name)
    python = venv / "bin" / "python"
    env = {
        "LENSGRAPH_MODEL_REPOSITORY": str(settings.model_repository()),
        "PEER_MAX_BATCH_SIZE": str(settings.max_batch_size),
        "PEER_THREADS": str(settings.threads),
        "PEER_TOP_K": str(settings.top_k),
        "PYTHONUNBUFFERED": "1",
    }
    if name == "bentoml":
        env.update({
            "PEER_MAX_LATENCY_MS": str(settings.bentoml_max_latency_ms),
            "PEER_WORKERS": str(settings.bentoml_workers),
            "BENTOML_HOME": str(ROOT / ".bench" / "bentoml_home"),  # not ~/bentoml
            "BENTOML_DO_NOT_TRACK": "true",
        })
        command = [str(venv / "bin" / "bentoml"), "serve", "bentoml_service:LensgraphClassifier",
                   "--host", HOST, "--port", str(port), "--working-dir", str(PEERS_DIR)]
        return command, env
    # Triton: the Python backend stub embeds libpython; it must be this interpreter's (see the docs).
    libdir = _libdir(python)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    command = [str(python), str(PEERS_DIR / "triton_server.py"), "--host", HOST, "--port", str(port),
               "--max-batch-size", str(settings.max_batch_size),
               "--batch-delay-us", str(int(round(settings.batch_delay_ms * 1000))),
               "--threads", str(settings.threads), "--top-k", str(settings.top_k)]
    if workspace is not None:
        command += ["--workspace", str(workspace)]
    return command, env


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def start_peer(name: str, port: int | None = None, settings: PeerSettings = PeerSettings(),
               timeout: float = 240.0) -> PeerProcess:
    """Start peer ``name`` on ``port`` (a free one when None); return once it classifies a real image."""
    _check_name(name)
    port = port or free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    workspace = RUN / f"triton-{port}" if name == "triton" else None
    if workspace is not None:
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.parent.mkdir(parents=True, exist_ok=True)
    command, env = _command(name, port, settings, workspace)
    log = LOGS / f"{name}-{port}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    peer = PeerProcess(name, port, process, log, settings, workspace)
    try:
        _wait_ready(peer, timeout)
    except BaseException:
        stop_peer(peer)
        raise
    peer.startup_s = round(time.monotonic() - started, 1)
    return peer


def _wait_ready(peer: PeerProcess, timeout: float) -> None:
    image = probe_image()
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with status {peer.process.returncode} while starting; "
                               f"log {peer.log}:\n{log_tail(peer.log)}")
        log = log_tail(peer.log, 1 << 20)
        if any(line in log for line in FATAL_LOG_LINES[peer.name]):
            raise RuntimeError(f"{peer.name} failed to start; log {peer.log}:\n{log_tail(peer.log)}")
        try:
            status, body = post(peer.name, peer.port, image, timeout=10)
            if status == 200:
                parse_predictions(peer.name, json.loads(body))
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"{peer.name} did not answer a classification request within {timeout:.0f} s "
                       f"(last: {last}); log {peer.log}:\n{log_tail(peer.log)}")


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it, alive now (read from /proc)."""
    return {root} | descendants([root])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"


def stop_peer(peer: PeerProcess, timeout: float = 30.0) -> None:
    """SIGTERM the peer's process group, then SIGKILL what is left of its tree; wait until all are gone."""
    tree = process_tree(peer.process.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(peer.process.pid, signal.SIGTERM)  # start_new_session: the group id is the pid
    try:
        peer.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + timeout
    while True:
        tree |= {p for root in list(tree) if _alive(root) for p in process_tree(root)}
        left = {p for p in tree if _alive(p)}
        if not left:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name}: processes {sorted(left)} survived SIGKILL")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(peer.process.pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    if peer.process.returncode is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            peer.process.wait(timeout=5)
    if peer.workspace is not None:
        shutil.rmtree(peer.workspace, ignore_errors=True)


@contextlib.contextmanager
def peer_server(name: str, port: int | None = None, settings: PeerSettings | None = None,
                timeout: float = 240.0) -> Iterator[RunningPeer]:
    """Start peer ``name``, yield what the benchmark needs to load it, and stop it afterwards.

    ``settings`` default to ``settings_from_env()``: PeerSettings' defaults, overridden by
    PEER_MAX_BATCH_SIZE, PEER_BATCH_DELAY_MS, PEER_MAX_LATENCY_MS and PEER_THREADS when set.
    """
    peer = start_peer(name, port, settings or settings_from_env(), timeout)
    try:
        yield RunningPeer(name, peer.port, peer.roots, ("classify",), request_for(name), peer)
    finally:
        stop_peer(peer)


def settings_from_env() -> PeerSettings:
    env = os.environ.get
    return dataclasses.replace(
        PeerSettings(),
        **{k: t(env(v)) for k, v, t in (
            ("max_batch_size", "PEER_MAX_BATCH_SIZE", int), ("batch_delay_ms", "PEER_BATCH_DELAY_MS", float),
            ("bentoml_max_latency_ms", "PEER_MAX_LATENCY_MS", int), ("threads", "PEER_THREADS", int),
        ) if env(v)},
    )


def main(argv: list[str] | None = None) -> int:
    """Start each named peer, classify the given images, print the answers, stop it."""
    import argparse

    parser = argparse.ArgumentParser(description="Start a peer, classify images with it, stop it.")
    parser.add_argument("peers", nargs="+", choices=NAMES)
    parser.add_argument("--image", action="append", type=Path, default=[], help="an image to classify (repeatable)")
    args = parser.parse_args(argv)
    for name in args.peers:
        with peer_server(name) as running:
            print(f"{name}: ready on port {running.port} in {running.peer.startup_s} s (log {running.peer.log})")
            for image in args.image:
                print(f"  {image.name}: {json.dumps(classify(running.peer, image.read_bytes()))}")
        print(f"{name}: stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
