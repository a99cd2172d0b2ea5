"""torch -> ONNX with a dynamic batch axis, a checker pass and a measured parity check.

Exporter: the torch.export-based exporter (``dynamo=True``), the maintained path in torch 2.13.
Opset 18: the lowest opset that exporter emits natively, run by every ONNX Runtime since 1.14
and by the TensorRT execution provider, so the same artefact serves on CPU and GPU hosts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

OPSET = 18
PARITY_ATOL = 1e-4


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: Sequence[str],
    dynamic_spatial: bool = False,
) -> onnx.ModelProto:
    """Export ``module`` (single input) to ``path``; batch (and optionally H, W) dynamic."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    dims: dict[int, object] = {0: batch}
    if dynamic_spatial:
        dims[1] = torch.export.Dim("height", min=16, max=8192)
        dims[2] = torch.export.Dim("width", min=16, max=8192)
    return export_program(module, (example,), path, [input_name], output_names, (dims,))


def export_program(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: tuple,
) -> onnx.ModelProto:
    """Export a module of any number of inputs (``dynamic_shapes``: one dict per input), checked."""
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter reports progress on stdout and warns about optional packages; keep the CLI readable.
    with _quiet():
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
        )
        program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


def torch_outputs(module: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(torch.from_numpy(batch))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def max_abs_diff(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> float:
    if len(expected) != len(actual):
        raise ValueError(f"output count differs: torch {len(expected)}, onnx {len(actual)}")
    worst = 0.0
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            raise ValueError(f"output shape differs: torch {e.shape}, onnx {a.shape}")
        worst = max(worst, float(np.max(np.abs(e.astype(np.float64) - a.astype(np.float64)))) if e.size else 0.0)
    return worst


def random_input(shape: Sequence[int], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(0, 256, size=tuple(shape), dtype=np.uint8)
    return rng.standard_normal(size=tuple(shape)).astype(np.float32)


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
