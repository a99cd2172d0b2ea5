"""ONNX Runtime sessions with explicit threads and providers.

Ray sets OMP_NUM_THREADS from a replica's num_cpus, but ONNX Runtime sizes its own pools from the
machine's core count; on a shared node that oversubscribes the CPU. Threads are therefore always
set explicitly here, from the deployment's configuration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionConfig:
    """How to run one model: threads, graph optimisation and execution providers in order of preference."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    providers: Sequence[str] = field(default_factory=lambda: ("CPUExecutionProvider",))

    @classmethod
    def from_dict(cls, values: dict | None) -> "SessionConfig":
        values = dict(values or {})
        if "providers" in values:
            values["providers"] = tuple(values["providers"])
        return cls(**values)


def default_threads() -> int:
    """Threads for this process: OMP_NUM_THREADS when Ray set it, else 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def available_providers(wanted: Sequence[str]) -> list[str]:
    """The wanted providers this build of ONNX Runtime has, CPU always last as the fallback."""
    have = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in have and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


def create_session(path: str | Path, config: SessionConfig = SessionConfig()) -> ort.InferenceSession:
    if config.graph_optimization not in GRAPH_LEVELS:
        raise ValueError(f"graph_optimization must be one of {sorted(GRAPH_LEVELS)}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(config.intra_op_threads))
    options.inter_op_num_threads = max(1, int(config.inter_op_threads))
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_LEVELS[config.graph_optimization]
    options.log_severity_level = 3
    # Spinning threads burn the CPU other replicas need on a small node.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=available_providers(config.providers))


def run(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, inputs)
