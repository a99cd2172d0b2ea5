"""The floor: the same core pipeline in this process, nothing between the stages.

Decode, preprocess, ONNX Runtime and post-process run back to back (lensgraph.inference.local).
Single-image latency: a loop of batch-1 calls with two ONNX Runtime threads. Maximum images/s:
the best over batch sizes, ONNX Runtime threads (1, 2) and worker threads calling the pipeline
at once (1, 2: one decodes while the other infers; Pillow, OpenCV and ONNX Runtime release the
GIL). No request parsing, no copies between processes: serving can approach this, not beat it.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable

import numpy as np

from benchmarks.workloads import Workload
from lensgraph.inference.local import LocalPipelines

BATCH_SIZES = (1, 8, 32)
WORKERS = (1, 2)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _runner(local: LocalPipelines, pipeline: str) -> Callable[[list[bytes]], list]:
    if pipeline == "classify":
        return lambda images: local.classify(images, top_k=2)
    if pipeline == "faces":
        return local.faces
    return lambda images: local.digits(images, samples=30)


def _throughput(run: Callable[[list[bytes]], list], batch: list[bytes], workers: int, seconds: float) -> tuple[int, float, float]:
    """(images done, elapsed s, CPU s) with ``workers`` threads calling ``run(batch)`` in a loop."""
    run(batch)
    done = [0] * workers
    start = time.perf_counter()
    cpu0 = _cpu()

    def loop(k: int) -> None:
        while time.perf_counter() - start < seconds:
            run(batch)
            done[k] += len(batch)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.perf_counter() - start, _cpu() - cpu0


def measure(locals_by_threads: dict[int, LocalPipelines], workload: Workload, seconds: float) -> list[dict]:
    """Two records: latency at batch 1 (concurrency 1), and the best throughput found."""
    images = workload.images
    run = _runner(locals_by_threads[max(locals_by_threads)], workload.pipeline)
    for i in range(3):
        run(images[i % len(images) : i % len(images) + 1])  # warm-up: first calls allocate
    latencies, i, cpu0, start = [], 0, _cpu(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run([images[i % len(images)]])
        latencies.append((time.perf_counter() - t0) * 1000)
        i += 1
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu0
    lat = np.asarray(latencies)
    records = [{
        "concurrency": 1, "batch_size": 1, "requests": len(lat),
        "throughput_rps": round(len(lat) / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "failures": 0, "cpu_s_per_request": round(cpu / len(lat), 5),
    }]
    best = None
    for ort_threads, local in sorted(locals_by_threads.items()):
        run = _runner(local, workload.pipeline)
        for workers in WORKERS:
            for size in BATCH_SIZES:
                batch = [images[k % len(images)] for k in range(size)]
                done, elapsed, cpu = _throughput(run, batch, workers, seconds / 2)
                rate = done / elapsed
                if best is None or rate > best["throughput_rps"]:
                    best = {"concurrency": None, "batch_size": size, "workers": workers, "ort_threads": ort_threads,
                            "requests": done, "throughput_rps": round(rate, 2), "p50_ms": None, "p99_ms": None,
                            "failures": 0, "cpu_s_per_request": round(cpu / done, 5)}
    records.append(best)
    return records
