"""Produce a serving artefact (model.onnx) from a torch module or an existing ONNX file.

Both paths end the same way: a checked ONNX file with a uint8 NHWC ``image`` input, a dynamic batch
axis, named outputs, and a parity figure measured against the source model on random inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lensgraph.errors import WeightsError
from lensgraph.runtime.session import SessionConfig, create_session

INPUT_NAME = "image"
PARITY_ATOL = 1e-4
_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT64: "int64"}


@dataclass
class ExportReport:
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    parity_max_abs_diff: float
    parity_inputs: str
    settings: dict[str, Any] = field(default_factory=dict)


def describe_io(model: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    initializers = {i.name for i in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "dtype": _DTYPES.get(tensor.elem_type, str(tensor.elem_type)), "shape": shape}

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


def _ort_outputs(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    session = create_session(path, SessionConfig(intra_op_threads=2))
    return session.run(None, {session.get_inputs()[0].name: batch})


def export_torch(
    module,
    out_path: Path,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    output_names: Sequence[str],
    classifier: bool = False,
    bake_resize: bool = False,
) -> ExportReport:
    """Wrap ``module`` with in-graph normalisation, export it, and measure ONNX vs torch parity.

    ``image_shape`` is (C, H, W) of one image; the exported input is uint8 [batch, H, W, C].
    """
    import torch

    from lensgraph.export.torch_export import OPSET, export_onnx, max_abs_diff, random_input, torch_outputs
    from lensgraph.export.wrappers import ClassifierServing, NormalizedModel

    channels, height, width = image_shape
    module = module.eval()
    if classifier:
        wrapped = ClassifierServing(module, mean, std, resize_to=height if bake_resize else None).eval()
    else:
        wrapped = NormalizedModel(module, mean, std).eval()
    example_hw = (height + 76, width + 176) if bake_resize else (height, width)
    example = torch.from_numpy(random_input((2, *example_hw, channels), "uint8", seed=0))
    model = export_onnx(wrapped, example, out_path, INPUT_NAME, output_names, dynamic_spatial=bake_resize)

    worst = 0.0
    checked = []
    for seed, batch_size in ((1, 1), (2, 3)):
        hw = (height + 31 * seed, width + 17 * seed) if bake_resize else (height, width)
        batch = random_input((batch_size, *hw, channels), "uint8", seed=seed)
        worst = max(worst, max_abs_diff(torch_outputs(wrapped, batch), _ort_outputs(out_path, batch)))
        checked.append(f"uint8{[batch_size, *hw, channels]}")
    if not worst <= PARITY_ATOL:
        raise WeightsError(f"ONNX Runtime differs from torch by {worst:.3g} (> {PARITY_ATOL}) on random inputs")
    inputs, outputs = describe_io(model)
    settings = {
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": OPSET,
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "dynamic_axes": ["batch", "height", "width"] if bake_resize else ["batch"],
        "normalization_in_graph": {"mean": list(map(float, mean)), "std": list(map(float, std))},
        "resize_in_graph": bool(bake_resize),
    }
    return ExportReport(inputs, outputs, worst, ", ".join(checked), settings)


def import_onnx(
    source: Path,
    out_path: Path,
    mean: Sequence[float],
    std: Sequence[float],
    output_names: Sequence[str],
) -> ExportReport:
    """Validate an existing ONNX file, give it a uint8 NHWC input and a dynamic batch, check parity."""
    from lensgraph.export.onnx_import import (
        graph_inputs,
        load_checked,
        make_batch_dynamic,
        prepend_uint8_image_input,
        rename_outputs,
        strip_initializer_inputs,
    )

    original = load_checked(source)
    strip_initializer_inputs(original)
    (original_input,) = [i for i in graph_inputs(original)][:1] or [None]
    if original_input is None:
        raise WeightsError(f"{source} has no input")
    model = onnx.ModelProto()
    model.CopyFrom(original)
    rename_outputs(model, output_names)
    prepend_uint8_image_input(model, mean, std, new_name=INPUT_NAME)
    make_batch_dynamic(model)
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))

    dims = [d.dim_value for d in original_input.type.tensor_type.shape.dim]
    channels, height, width = dims[1], dims[2], dims[3]
    original_path = out_path.with_name("original.onnx")
    onnx.save(original, str(original_path))
    try:
        worst = 0.0
        images = np.random.default_rng(3).integers(0, 256, size=(3, height, width, channels), dtype=np.uint8)
        batched = _ort_outputs(out_path, images)
        ref_session = create_session(original_path, SessionConfig(intra_op_threads=2))
        mean_a = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        std_a = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        for i in range(len(images)):
            x = (images[i : i + 1].transpose(0, 3, 1, 2).astype(np.float32) - mean_a) / std_a
            reference = ref_session.run(None, {original_input.name: x})
            worst = max(worst, max(float(np.max(np.abs(r - b[i : i + 1]))) for r, b in zip(reference, batched)))
    finally:
        original_path.unlink(missing_ok=True)
    if not worst <= PARITY_ATOL:
        raise WeightsError(f"the adapted model differs from {source.name} by {worst:.3g} (> {PARITY_ATOL})")
    inputs, outputs = describe_io(model)
    settings = {
        "exporter": "imported ONNX (lensgraph.export.onnx_import)",
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "onnx": onnx.__version__,
        "dynamic_axes": ["batch"],
        "normalization_in_graph": {"mean": list(map(float, mean)), "std": list(map(float, std))},
        "original_input": {"name": original_input.name, "shape": dims, "dtype": "float32"},
    }
    return ExportReport(inputs, outputs, worst, f"uint8[3, {height}, {width}, {channels}] batched vs one-by-one original", settings)
