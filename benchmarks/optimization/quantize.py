"""INT8 quantisation of the served ONNX models with onnxruntime.quantization, and what it changes.

* dynamic: ``quantize_dynamic``, int8 or uint8 weights, activations quantised per call at run time
* static: ``quantize_static``, QDQ format, per-channel int8 (or uint8) weights and uint8
  activations whose ranges come from a calibration pass (MinMax) over real inputs

Both start from ``quant_pre_process`` (symbolic shape inference and graph clean-up) when it
succeeds, else from the model as it is (the error is reported). The models take uint8 images and
normalise inside the graph; that prefix, the dropout-mask products and the softmax stay float:
only the ops in ``STATIC_OP_TYPES`` are quantised statically (a uint8 softmax output would round
probabilities to steps of 1/256, which the digits' entropies cannot afford).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

WEIGHT_TYPES = {"QInt8": QuantType.QInt8, "QUInt8": QuantType.QUInt8}
STATIC_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "Clip", "Relu", "MaxPool")
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


def preprocess(src: Path, dst: Path) -> tuple[Path, str | None]:
    """``quant_pre_process`` into ``dst``; on failure the original model and the error."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
        return dst, None
    except Exception as exc:  # noqa: BLE001 - reported, and quantisation goes on without it
        return src, f"{type(exc).__name__}: {exc}"


def quantize_dynamic_model(src: Path, dst: Path, weight_type: str = "QInt8") -> dict:
    """Dynamic int8: weights quantised once, activations per call. Returns what was done."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, error = preprocess(src, dst.with_suffix(".pre.onnx"))
    quantize_dynamic(str(source), str(dst), weight_type=WEIGHT_TYPES[weight_type])
    return _describe(src, dst, error, f"quantize_dynamic(weight_type={weight_type})")


class FeedsReader(CalibrationDataReader):
    """Hands the calibrator one prepared input dict at a time."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_static_model(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], weight_type: str = "QInt8",
                          per_channel: bool = True, reduce_range: bool = False) -> dict:
    """Static QDQ: uint8 activations, ``weight_type`` weights, ranges calibrated (MinMax) on ``feeds``.

    uint8 x int8 ("U8S8", the tool's default) is the fast path of ONNX Runtime's x86 kernels, but
    without VNNI instructions (AVX2 only) their 16-bit intermediate sums can saturate; ``reduce_range``
    (7-bit weights) and uint8 weights ("U8U8") are ONNX Runtime's documented ways around that."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, error = preprocess(src, dst.with_suffix(".pre.onnx"))
    present = {node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node}
    op_types = [op for op in STATIC_OP_TYPES if op in present]
    quantize_static(
        str(source), str(dst), FeedsReader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=WEIGHT_TYPES[weight_type],
        reduce_range=reduce_range,
        op_types_to_quantize=op_types,
        calibrate_method=CalibrationMethod.MinMax,
    )
    how = (f"quantize_static(QDQ, per_channel={per_channel}, reduce_range={reduce_range}, activations QUInt8, "
           f"weights {weight_type}, MinMax, "
           f"op_types={op_types}, {sum(len(next(iter(f.values()))) for f in feeds)} calibration images)")
    return _describe(src, dst, error, how)


def _describe(src: Path, dst: Path, preprocess_error: str | None, how: str) -> dict:
    return {
        "method": how,
        "path": str(dst),
        "preprocessed": preprocess_error is None,
        "preprocess_error": preprocess_error,
        "fp32_bytes": src.stat().st_size,
        "bytes": dst.stat().st_size,
        **quantized_ops(dst),
    }


def quantized_ops(path: Path) -> dict:
    """Which ops the file quantises: integer/QLinear ops (dynamic), quantisable ops fed by
    DequantizeLinear (QDQ; ONNX Runtime fuses them into QLinearConv, QGemm, ... when it loads the
    file, see ``sessions.runtime_ops``), and the compute ops (Conv/Gemm/MatMul) left in float."""
    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    integer = Counter(n.op_type for n in graph.node if n.op_type.endswith("Integer") or n.op_type.startswith("QLinear"))
    qdq = Counter(n.op_type for n in graph.node if n.op_type in STATIC_OP_TYPES
                  and any(producer.get(i) == "DequantizeLinear" for i in n.input))
    float_left = Counter(n.op_type for n in graph.node if n.op_type in COMPUTE_OPS
                         and not any(producer.get(i) == "DequantizeLinear" for i in n.input))
    return {"integer_ops": dict(integer), "qdq_ops": dict(qdq), "float_compute_ops": dict(float_left),
            "quantize_nodes": sum(1 for n in graph.node if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear"))}


# -- accuracy ------------------------------------------------------------------------------------


def digit_probabilities(session, images: np.ndarray, samples: int = 1, seed: int | None = None,
                        chunk: int = 500) -> np.ndarray:
    """[T, N, 10] of the digits graph; ``seed`` None: the deterministic pass (T=1, all-ones masks).
    With a seed every chunk's masks come from ``[seed, chunk index]``, so two models see the same masks."""
    from benchmarks.optimization.inputs import digit_feeds

    out = []
    for k, i in enumerate(range(0, len(images), chunk)):
        rng = None if seed is None else np.random.default_rng([seed, k])
        out.append(session.run(None, digit_feeds(images[i : i + chunk], samples, rng))[0])
    return np.concatenate(out, axis=1)


def classifier_probabilities(session, images: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([session.run(None, {"image": images[i : i + chunk]})[0] for i in range(0, len(images), chunk)])


def compare_classifier(fp32: np.ndarray, int8: np.ndarray) -> dict:
    """Top-1 agreement (on all images, and where fp32's top-1 probability is >= 0.5), mean top-5
    overlap and |Δprob| of int8 against fp32 probabilities [N, C]."""
    top5_a, top5_b = np.argsort(-fp32, axis=1)[:, :5], np.argsort(-int8, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_a, top5_b)]
    diff = np.abs(fp32 - int8)
    same = top5_a[:, 0] == top5_b[:, 0]
    confident = fp32.max(axis=1) >= 0.5
    return {
        "images": len(fp32),
        "fp32_mean_top1_prob": float(fp32.max(axis=1).mean()),
        "top1_agreement": float(np.mean(same)),
        "confident_images": int(confident.sum()),
        "top1_agreement_confident": float(np.mean(same[confident])) if confident.any() else None,
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_prob_diff": float(diff.max()),
        "mean_max_abs_prob_diff": float(diff.max(axis=1).mean()),
    }
