"""One virtual environment per peer system under ``.bench/venvs/<name>``, created on demand.

The peers' own pins (BentoML's, PyTriton's) conflict with ours (Ray Serve's), so each gets its
own interpreter environment with: the peer at a pinned version, the same runtime we serve with
(ONNX Runtime, Pillow, OpenCV at our pins; numpy 2 except for PyTriton, which requires numpy<2),
PyYAML (the model repository's cards), and
this project installed editable with ``--no-deps`` so the peers import the *same* core code
(``lensgraph.imaging``, ``lensgraph.inference.classifier``) without Ray.

A stamp file records what was installed; a second call with the same requirements is a no-op.

    python -m benchmarks.peers.venvs bentoml triton     # create both (minutes, once)
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".bench" / "venvs"

# Our serving runtime, at the pins in pyproject.toml (numpy: what pyproject allows).
ONNXRUNTIME = "onnxruntime==1.31.1"
PILLOW = "pillow==13.0.0"
OPENCV = "opencv-python-headless==5.0.0.93"
PYYAML = "pyyaml==6.0.3"  # lensgraph.repository.store reads the model card
NUMPY = "numpy>=2.0,<3"


@dataclass(frozen=True)
class PeerSpec:
    """What goes into one peer's environment: ``install`` resolved together, ``no_deps`` after it."""

    install: tuple[str, ...]
    no_deps: tuple[str, ...] = ()


PEERS: dict[str, PeerSpec] = {
    # bentoml 1.4.40 needs certifi>=2026.10.19, newer than the package index here has; 1.4.39 resolves.
    "bentoml": PeerSpec(install=("bentoml==1.4.39", ONNXRUNTIME, PILLOW, OPENCV, NUMPY, PYYAML)),
    # nvidia-pytriton 0.7.0 declares numpy<2 (so numpy 1.26 is installed here),
    # while opencv-python-headless 5.0.0.93 declares numpy>=2. The OpenCV wheel is installed without
    # its dependency check and verified to work on numpy 1.26 (``_CHECK`` below resizes an image).
    "triton": PeerSpec(install=("nvidia-pytriton==0.7.0", ONNXRUNTIME, PILLOW, PYYAML), no_deps=(OPENCV,)),
}

# Run in the new environment: the same core modules the service uses must import and work.
_CHECK = (
    "import numpy as np, cv2, onnxruntime;"
    "from lensgraph.imaging.decode import decode_image;"
    "from lensgraph.imaging.transforms import classifier_standard;"
    "from lensgraph.inference.classifier import ClassifierRunner;"
    "out = classifier_standard(np.zeros((300, 400, 3), np.uint8));"
    "assert out.shape == (224, 224, 3), out.shape;"
    "print('numpy', np.__version__, 'cv2', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"
)

STAMP = ".stamp-lensgraph-peer"


def venv_dir(name: str) -> Path:
    return VENVS / name


def venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def requirements(name: str) -> list[str]:
    """Every pinned requirement of a peer's environment (for the stamp and the docs)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    spec = PEERS[name]
    return [*spec.install, *spec.no_deps]


def _fingerprint(name: str, base_python: str) -> str:
    payload = {"requirements": requirements(name), "python": base_python, "root": str(ROOT)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _run(cmd: list[str], log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}; see {log.name}")


def ensure_venv(name: str, base_python: str | None = None, quiet: bool = False) -> Path:
    """Create (or reuse) ``.bench/venvs/<name>`` and return its directory.

    Reinstalls when the stamp is missing or records other requirements; otherwise returns at once.
    The install log is ``.bench/venvs/<name>.log``.
    """
    base_python = base_python or os.environ.get("LENSGRAPH_PEER_PYTHON") or "python3"
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f"{name}.lock", "w") as lock:  # one installer at a time per peer
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(name, base_python, quiet)


def _ensure_locked(name: str, base_python: str, quiet: bool) -> Path:
    directory = venv_dir(name)
    stamp = directory / STAMP
    fingerprint = _fingerprint(name, base_python)
    if stamp.is_file() and venv_python(name).is_file():
        try:
            if json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
                return directory
        except ValueError:
            pass
    log_path = VENVS / f"{name}.log"
    started = time.monotonic()
    if not quiet:
        print(f"[peers] installing {name} into {directory} (log: {log_path})", file=sys.stderr, flush=True)
    with open(log_path, "w") as log:
        if not venv_python(name).is_file():
            _run([base_python, "-m", "venv", str(directory)], log)
        py = str(venv_python(name))
        _run([py, "-m", "pip", "install", "--upgrade", "pip"], log)
        _run([py, "-m", "pip", "install", *PEERS[name].install], log)
        if PEERS[name].no_deps:
            _run([py, "-m", "pip", "install", "--no-deps", *PEERS[name].no_deps], log)
        # The same core code as the service, without its dependencies (no Ray in a peer).
        _run([py, "-m", "pip", "install", "--no-deps", "-e", str(ROOT)], log)
        _run([py, "-c", _CHECK], log)
        freeze = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    stamp.write_text(json.dumps({
        "fingerprint": fingerprint,
        "requirements": requirements(name),
        "install_seconds": round(elapsed, 1),
        "freeze": freeze.splitlines(),
    }, indent=1) + "\n")
    if not quiet:
        print(f"[peers] {name} ready in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=sorted(PEERS), help=f"peers to install (default: all of {sorted(PEERS)})")
    args = parser.parse_args(argv)
    for name in args.names:
        print(ensure_venv(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
