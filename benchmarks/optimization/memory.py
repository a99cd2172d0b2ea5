"""Section 7: what loading one model costs in memory, each in a fresh process.

The child (``python -m benchmarks.optimization.memory MODEL.onnx``) imports numpy and ONNX
Runtime, reads its RSS and PSS (psutil ``memory_full_info``), creates the session, reads them
again, runs one batch of 16 (ONNX Runtime's arena grows on the first run) and reads them a third
time. One process per model, so one model's pages never count towards another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MIB = 2**20


def _usage() -> dict[str, float]:
    import psutil

    info = psutil.Process().memory_full_info()
    return {"rss_mib": round(info.rss / MIB, 1), "pss_mib": round(getattr(info, "pss", info.rss) / MIB, 1)}


def _child(path: Path, threads: int) -> dict:
    import numpy as np

    from lensgraph.runtime.session import SessionConfig, create_session

    before = _usage()
    sess = create_session(path, SessionConfig(intra_op_threads=threads))
    loaded = _usage()
    feeds = {}
    for spec in sess.get_inputs():
        shape = [16 if not isinstance(d, int) else d for d in spec.shape]
        if spec.name.startswith("mask"):
            shape[0] = 30  # the digits graph at its served T
        dtype = np.uint8 if "uint8" in spec.type else np.float32
        feeds[spec.name] = np.ones(shape, dtype)
    sess.run(None, feeds)
    ran = _usage()
    return {
        "baseline": before,
        "session_delta": {k: round(loaded[k] - before[k], 1) for k in before},
        "after_first_batch16_delta": {k: round(ran[k] - before[k], 1) for k in before},
    }


def measure(models: dict[str, Path], threads: int) -> list[dict]:
    rows = []
    for name, path in models.items():
        done = subprocess.run([sys.executable, "-m", "benchmarks.optimization.memory", str(path), str(threads)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            rows.append({"model": name, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        rows.append({"model": name, "file_mib": round(path.stat().st_size / MIB, 2),
                     **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]), int(sys.argv[2]))))
