"""Bring an existing ONNX file into the repository: validate it, make its batch axis dynamic,
and put a uint8 NHWC image input with the model's own normalisation in front of it.

Imported models keep their original opset; only Cast, Transpose, Sub and Mul are added, which
every opset from 7 on has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lensgraph.errors import WeightsError


def load_checked(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types
        raise WeightsError(f"{path} is not a valid ONNX model: {exc}") from exc
    return model


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: old exporters also list every initializer as a graph input."""
    initializers = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def strip_initializer_inputs(model: onnx.ModelProto) -> None:
    keep = graph_inputs(model)
    del model.graph.input[:]
    model.graph.input.extend(keep)


def make_batch_dynamic(model: onnx.ModelProto, name: str = "batch") -> None:
    """Batch axis symbolic on every input and output; stale inner shapes dropped (ORT re-infers them)."""
    for value in list(graph_inputs(model)) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = name
    del model.graph.value_info[:]


def prepend_uint8_image_input(
    model: onnx.ModelProto,
    mean: Sequence[float],
    std: Sequence[float],
    new_name: str = "image",
) -> None:
    """Replace the float NCHW input with uint8 NHWC ``new_name`` and normalise inside the graph."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise WeightsError(f"expected one image input, the model has {[i.name for i in inputs]}")
    old = inputs[0]
    dims = old.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise WeightsError(f"input {old.name} is not NCHW (rank {len(dims)})")
    channels = dims[1].dim_value
    if len(mean) != channels or len(std) != channels:
        raise WeightsError(f"mean/std need {channels} values for input {old.name}")
    height, width = dims[2].dim_value, dims[3].dim_value

    new_input = helper.make_tensor_value_info(new_name, TensorProto.UINT8, ["batch", height, width, channels])
    prefix = "lensgraph_pre_"
    mean_t = numpy_helper.from_array(np.asarray(mean, np.float32).reshape(1, channels, 1, 1), prefix + "mean")
    scale_t = numpy_helper.from_array((1.0 / np.asarray(std, np.float32)).reshape(1, channels, 1, 1), prefix + "scale")
    nodes = [
        helper.make_node("Cast", [new_name], [prefix + "f32"], to=TensorProto.FLOAT, name=prefix + "cast"),
        helper.make_node("Transpose", [prefix + "f32"], [prefix + "nchw"], perm=[0, 3, 1, 2], name=prefix + "nchw"),
        helper.make_node("Sub", [prefix + "nchw", prefix + "mean"], [prefix + "centred"], name=prefix + "sub"),
        helper.make_node("Mul", [prefix + "centred", prefix + "scale"], [old.name], name=prefix + "scale"),
    ]
    graph = model.graph
    graph.initializer.extend([mean_t, scale_t])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    remaining = [i for i in graph.input if i.name != old.name]
    del graph.input[:]
    graph.input.extend([new_input] + remaining)


def rename_outputs(model: onnx.ModelProto, names: Sequence[str]) -> None:
    """Give outputs meaningful names (the landmark regressor's output is called '106')."""
    outputs = list(model.graph.output)
    if len(names) != len(outputs):
        raise WeightsError(f"model has {len(outputs)} outputs, {len(names)} names given")
    for value, new in zip(outputs, names):
        old = value.name
        if old == new:
            continue
        for node in model.graph.node:
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
        value.name = new
