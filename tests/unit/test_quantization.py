"""Dynamic INT8 quantisation of the served digits model (benchmarks/optimization/quantize.py):
the int8 file loads in ONNX Runtime, is smaller than fp32, and keeps its accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.optimization.quantize import digit_probabilities, quantize_dynamic_model
from lensgraph.datasets.mnist import load_split
from lensgraph.repository.store import find_model
from lensgraph.runtime.session import SessionConfig, create_session

IMAGES = 500


def test_dynamic_int8_digits_loads_is_smaller_and_keeps_accuracy(repository: Path, assets: Path, tmp_path: Path):
    fp32_path = find_model(repository, "digits").onnx_path
    result = quantize_dynamic_model(fp32_path, tmp_path / "digits_int8.onnx", "QInt8")
    int8_path = Path(result["path"])

    assert int8_path.is_file()
    assert int8_path.stat().st_size < fp32_path.stat().st_size
    assert result["integer_ops"], "no op was quantised"
    assert not result["float_compute_ops"], "some Conv/Gemm/MatMul stayed float"

    test = load_split("test", assets / "mnist")
    images, labels = np.ascontiguousarray(test.images[:IMAGES, :, :, None]), test.labels[:IMAGES]
    config = SessionConfig(intra_op_threads=1)
    accuracy = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        probs = digit_probabilities(create_session(path, config), images)  # deterministic pass: T=1, all-ones masks
        assert probs.shape == (1, IMAGES, 10)
        assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)
        accuracy[name] = float(np.mean(probs[0].argmax(1) == labels))
    assert accuracy["fp32"] > 0.97
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= 0.01, accuracy
