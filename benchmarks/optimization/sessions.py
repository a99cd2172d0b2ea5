"""ONNX Runtime sessions for the study: lensgraph's own ``create_session`` wherever it can express
the setting, ``ort.SessionOptions`` directly only for what ``SessionConfig`` has no field for
(parallel execution mode, which is what makes inter-op threads matter, and thread spinning)."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort

from lensgraph.runtime.session import GRAPH_LEVELS, SessionConfig, create_session


def session(path: Path, threads: int = 2, inter: int = 1, level: str = "all", parallel: bool = False,
            spinning: bool = False) -> ort.InferenceSession:
    """``create_session`` (sequential, spinning off, as served) unless ``parallel`` or ``spinning``."""
    config = SessionConfig(intra_op_threads=threads, inter_op_threads=inter, graph_optimization=level)
    if not parallel and not spinning:
        return create_session(path, config)
    return ort.InferenceSession(str(path), sess_options=_options(config, parallel, spinning),
                                providers=["CPUExecutionProvider"])


def _options(config: SessionConfig, parallel: bool = False, spinning: bool = False) -> ort.SessionOptions:
    """The options ``create_session`` sets, with the execution mode and spinning chosen here."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_LEVELS[config.graph_optimization]
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def runtime_ops(path: Path, level: str = "all") -> dict[str, int]:
    """The op types ONNX Runtime actually runs after its graph optimisations at ``level``."""
    with tempfile.TemporaryDirectory() as tmp:
        options = _options(SessionConfig(graph_optimization=level))
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())
