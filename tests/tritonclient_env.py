"""``tritonclient[http]==2.41.0``, the real Open Inference Protocol client, in its own virtual environment.

Its pins clash with ours: tritonclient 2.41.0's ``http`` extra needs ``geventhttpclient<=2.0.2`` and locust
2.47.0 (the dev extras) needs ``geventhttpclient>=2.5.1`` (pip's resolver: ResolutionImpossible). So, as the
benchmark's peers do (benchmarks/peers/venvs.py), it gets ``.bench/venvs/tritonclient``, made on first use
from the interpreter ``.venv`` was made from, and the tests drive it through a script in a subprocess
(tests/integration/v2_client.py). A stamp records what was installed; later calls return at once.

    .venv/bin/python -m tests.tritonclient_env      # make it now (a minute, once)
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench" / "venvs" / "tritonclient"
REQUIREMENTS = ("tritonclient[http]==2.41.0",)
STAMP = ".stamp-lensgraph-tritonclient"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(base_python: str | None = None) -> Path:
    """The environment's interpreter, after installing it when it is missing or stale; the log is
    ``.bench/venvs/tritonclient.log``."""
    base_python = base_python or getattr(sys, "_base_executable", None) or sys.executable
    VENV.parent.mkdir(parents=True, exist_ok=True)
    wanted = {"requirements": list(REQUIREMENTS), "python": base_python}
    with open(VENV.parent / "tritonclient.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = VENV / STAMP
        if stamp.is_file() and python().is_file():
            try:
                if {k: v for k, v in json.loads(stamp.read_text()).items() if k in wanted} == wanted:
                    return python()
            except ValueError:
                pass
        started = time.monotonic()
        log_path = VENV.parent / "tritonclient.log"
        with open(log_path, "w") as log:
            for cmd in ([base_python, "-m", "venv", "--clear", str(VENV)],
                        [str(python()), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS],
                        [str(python()), "-c", "import tritonclient.http, numpy; print(numpy.__version__)"]):
                log.write(f"$ {' '.join(cmd)}\n")
                log.flush()
                done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=900)
                if done.returncode != 0:
                    raise RuntimeError(f"failed ({done.returncode}): {' '.join(cmd)}; see {log_path}")
        freeze = subprocess.run([str(python()), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        stamp.write_text(json.dumps({**wanted, "install_seconds": round(time.monotonic() - started, 1),
                                     "freeze": freeze.splitlines()}, indent=1) + "\n")
    return python()


if __name__ == "__main__":
    print(ensure())
