"""Timing helpers and the facts about the machine a measurement ran on.

Every figure is taken after warm-up, over a fixed wall-clock window (at least ``MIN_RUNS`` calls):
latency is the median and p90 of single calls, throughput is images over the window's seconds.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_RUNS = 5


@dataclass(frozen=True)
class Budget:
    """Seconds of warm-up and of measurement per figure."""

    warmup_s: float
    measure_s: float


def call_times(fn: Callable[[], object], budget: Budget, min_runs: int = MIN_RUNS) -> list[float]:
    """Seconds per call of ``fn``: two calls and ``warmup_s`` of warm-up, then ``measure_s`` timed."""
    started = time.perf_counter()
    for i in range(1_000_000):
        fn()
        if i >= 1 and time.perf_counter() - started >= budget.warmup_s:
            break
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < budget.measure_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float], batch: int) -> dict[str, float]:
    ms = 1e3 * np.asarray(times)
    return {
        "batch": batch,
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "images_per_s": round(batch * len(ms) / (ms.sum() / 1e3), 2),
        "runs": len(ms),
    }


def measure(fn: Callable[[], object], batch: int, budget: Budget) -> dict[str, float]:
    """Median/p90 ms per call and images/s of ``fn``, which runs one batch of ``batch`` images."""
    return summary(call_times(fn, budget), batch)


def latency_and_throughput(run: Callable[[int], Callable[[], object]], budget: Budget,
                           latency_batch: int = 1, throughput_batch: int = 16) -> dict[str, dict]:
    """The standard pair: ``run(batch)`` returns a call that runs one batch."""
    return {"batch1": measure(run(latency_batch), latency_batch, budget),
            "batch16": measure(run(throughput_batch), throughput_batch, budget)}


def parallel_throughput(calls: list[Callable[[], object]], batch: int, budget: Budget) -> dict[str, float]:
    """Images/s when each call loops in its own Python thread (ONNX Runtime releases the GIL)."""
    for call in calls:  # warm-up, one after the other
        call_times(call, Budget(budget.warmup_s, 0.0), min_runs=1)
    counts = [0] * len(calls)
    per_call: list[list[float]] = [[] for _ in calls]
    barrier = threading.Barrier(len(calls) + 1)
    deadline = [0.0]

    def loop(k: int) -> None:
        barrier.wait()
        while time.perf_counter() < deadline[0] or counts[k] < 2:
            t0 = time.perf_counter()
            calls[k]()
            per_call[k].append(time.perf_counter() - t0)
            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + budget.measure_s
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = 1e3 * np.concatenate([np.asarray(times) for times in per_call])
    return {
        "batch": batch,
        "threads": len(calls),
        "images_per_s": round(batch * sum(counts) / elapsed, 2),
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "runs": int(sum(counts)),
    }


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(have & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma"})
    except OSError:
        pass
    return model, flags


def machine_facts() -> dict[str, object]:
    """What the numbers depend on: CPU (and its int8 instructions), cores, memory, library versions."""
    import onnxruntime as ort
    import psutil

    model, flags = _cpu_model_and_flags()
    facts: dict[str, object] = {
        "cpu": model,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }
    try:
        import onnx
        import torch

        facts.update(onnx=onnx.__version__, torch=str(torch.__version__))
    except ImportError:
        pass
    return facts
