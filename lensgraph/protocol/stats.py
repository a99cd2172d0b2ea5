"""A model replica's inference counters, kept per batch, and Triton's statistics extension made from them.

The counters are what ``GET /v2/models/{name}/stats`` answers and what perf_analyzer reads (``inference_count``,
``execution_count``, ``inference_stats.{success,queue,compute_input,compute_infer,compute_output,cache_hit,
cache_miss}.{count,ns}``). They are updated once per batch, with a handful of integer additions: a batch
knows its size, when it started and ended, and which of its items end a request (a /v1 item is one request;
the rows of a /v2 request are queued in order, so its last row ends it) with their arrival times.
Per request (as Triton counts): ``success`` is arrival to answer, ``queue`` arrival to the start of the
batch that finished it, ``compute_*`` that batch's times; ``inference_count`` counts rows (items),
``execution_count`` batches. Times are ``time.perf_counter_ns`` on the model replica.
"""

from __future__ import annotations

import time
from typing import Any

DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


class InferenceStats:
    """One replica's counters (Ray-free; the model deployment owns one)."""

    def __init__(self) -> None:
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.counts = dict.fromkeys(DURATIONS, 0)
        self.ns = dict.fromkeys(DURATIONS, 0)
        self.batches: dict[int, list[int]] = {}  # batch size -> [executions, input ns, infer ns, output ns]

    def batch(self, size: int, requests: int, arrivals_ns: int, started_ns: int, ended_ns: int,
              input_ns: int = 0, infer_ns: int | None = None, output_ns: int = 0) -> None:
        """A batch of ``size`` items that answered; ``requests`` of them ended a request, which arrived at
        ``arrivals_ns`` in all (sum of their perf_counter_ns). ``infer_ns`` defaults to the batch's span."""
        if infer_ns is None:
            infer_ns = ended_ns - started_ns - input_ns - output_ns
        counts, ns = self.counts, self.ns
        self.inference_count += size
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        counts["success"] += requests
        ns["success"] += requests * ended_ns - arrivals_ns
        counts["queue"] += requests
        ns["queue"] += requests * started_ns - arrivals_ns
        for name, spent in (("compute_input", input_ns), ("compute_infer", infer_ns), ("compute_output", output_ns)):
            counts[name] += requests
            ns[name] += requests * spent
        per_size = self.batches.get(size)
        if per_size is None:
            per_size = self.batches[size] = [0, 0, 0, 0]
        per_size[0] += 1
        per_size[1] += input_ns
        per_size[2] += infer_ns
        per_size[3] += output_ns

    def failed(self, requests: int, arrivals_ns: int, ended_ns: int) -> None:
        self.counts["fail"] += requests
        self.ns["fail"] += requests * ended_ns - arrivals_ns

    def snapshot(self) -> dict[str, Any]:
        """Plain numbers, for a handle call's answer."""
        return {"inference_count": self.inference_count, "execution_count": self.execution_count,
                "last_inference": self.last_inference_ms,
                "inference_stats": {k: {"count": self.counts[k], "ns": max(0, self.ns[k])} for k in DURATIONS},
                "batches": {size: list(v) for size, v in sorted(self.batches.items())}}


def model_stat(served_name: str, version: int | str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Triton's ``$model_stat`` for one model version from a replica's ``snapshot()``."""

    def duration(count: int, ns: int) -> dict[str, int]:
        return {"count": int(count), "ns": int(ns)}

    batch_stats = [{"batch_size": int(size),
                    "compute_input": duration(n, input_ns), "compute_infer": duration(n, infer_ns),
                    "compute_output": duration(n, output_ns)}
                   for size, (n, input_ns, infer_ns, output_ns) in sorted(snapshot["batches"].items(),
                                                                            key=lambda kv: int(kv[0]))]
    return {
        "name": served_name,
        "version": str(version),
        "last_inference": int(snapshot["last_inference"]),
        "inference_count": int(snapshot["inference_count"]),
        "execution_count": int(snapshot["execution_count"]),
        "inference_stats": {k: duration(v["count"], v["ns"]) for k, v in snapshot["inference_stats"].items()},
        "batch_stats": batch_stats,
    }
