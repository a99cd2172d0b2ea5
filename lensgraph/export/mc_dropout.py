"""Monte-Carlo dropout as ONE ONNX graph: the trunk once per image, the dropout head T times.

A naive MC-dropout service runs the whole network T times per image. In :class:`DigitCNN` all
dropout lives in the head, so the convolutions (about 98% of the multiply-adds) are the same in
every pass. The efficient graph computes them once per image and then evaluates the head for all
T samples of all N images as one batched matrix product over [T*N] rows:

    image uint8 [N, 28, 28, 1]  --normalise, conv trunk-->  f [N, F]            (once)
    mask1 float32 [T, N, F], mask2 float32 [T, N, H]        (explicit inverted-dropout masks)
    h = relu((f * mask1) @ W1^T + b1) * mask2                [T*N, H]           (one GEMM)
    probabilities = softmax(h @ W2^T + b2)                   [T, N, 10]         (one GEMM)
    energy = -logsumexp(relu(f @ W1^T + b1) @ W2^T + b2)     [N]                (the eval-mode head once)
    distance = 1 - max(unit(f) @ bank^T)                     [N]                (with a bank; one GEMM)

``energy`` (Liu et al., 2020) says how far the input lies from what the network was trained on, read
from its own deterministic logits: MC dropout's spread misses inputs the network is confidently wrong
about (a letter "H" -> 4), and the energy sees most of them (docs/uncertainty.md). It costs one extra
head row per image. ``distance`` (Sun et al., 2022) is the cosine distance of the trunk's features to
the nearest of a bank of training digits (lensgraph.training.calibrate_digits.feature_bank); it sees
letters the energy misses, for about a fifth of a deterministic pass with 3,000 digits.

The masks are inputs, not random ops inside the graph, so the caller decides the randomness: a
per-request seed reproduces a result exactly, and the same masks given to the naive form give
the same outputs (tested). All-ones masks with T=1 are the deterministic (eval-mode) pass.

Also here: the *naive* form (one full forward per sample, masks [N, F] / [N, H]) and the plain
deterministic graph, used by tests and by ``benchmarks/mc_dropout_cost.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from lensgraph.errors import WeightsError
from lensgraph.export.torch_export import OPSET, export_program, max_abs_diff
from lensgraph.export.wrappers import ImageNormalizer

__all__ = [
    "DeterministicServing",
    "McDropoutServing",
    "NaiveMcStep",
    "export_deterministic",
    "export_mc_dropout",
    "export_naive_step",
    "naive_mc_probabilities",
]

INPUT_NAMES = ("image", "mask1", "mask2")
OUTPUT_NAME = "probabilities"
ENERGY_NAME = "energy"
DISTANCE_NAME = "distance"
PARITY_ATOL = 1e-4


class _DigitServingBase(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("features", "head_fc1", "head_fc2", "dropout_p", "feature_dim", "mean", "std"):
            if not hasattr(model, name):
                raise WeightsError(f"MC-dropout export needs a DigitCNN-like model with {name!r}")
        self.normalize = ImageNormalizer([model.mean * 255.0], [model.std * 255.0])
        self.features = model.features
        self.fc1 = model.head_fc1
        self.fc2 = model.head_fc2
        self.dropout_p = float(model.dropout_p)
        self.feature_dim = int(model.feature_dim)
        self.hidden = int(self.fc1.out_features)
        self.num_classes = int(self.fc2.out_features)


class McDropoutServing(_DigitServingBase):
    """(image [N,28,28,1] uint8, mask1 [T,N,F], mask2 [T,N,H]) -> (probabilities [T,N,C], energy [N]
    [, distance [N] with a ``bank``: unit-length trunk features [K, F] of training digits])."""

    def __init__(self, model: nn.Module, bank: np.ndarray | None = None) -> None:
        super().__init__(model)
        self.has_bank = bank is not None
        if bank is not None:
            if bank.ndim != 2 or bank.shape[1] != self.feature_dim:
                raise WeightsError(f"the feature bank must be [K, {self.feature_dim}], got {list(bank.shape)}")
            self.register_buffer("bank_t", torch.from_numpy(np.ascontiguousarray(bank.T, np.float32)))

    def forward(self, image: torch.Tensor, mask1: torch.Tensor, mask2: torch.Tensor):
        f = self.features(self.normalize(image))  # [N, F]: the trunk runs once per image
        samples, n = mask1.shape[0], mask1.shape[1]
        rows = samples * n
        # T*N masked rows and N unmasked ones (the eval-mode head) through the same two GEMMs: one use of
        # each weight, so tools that rewrite the graph (int8 quantisation) see a plain MLP head.
        x = torch.cat([(f.unsqueeze(0) * mask1).reshape(rows, self.feature_dim), f], dim=0)
        h = torch.relu(self.fc1(x))
        h = torch.cat([h[:rows] * mask2.reshape(rows, self.hidden), h[rows:]], dim=0)
        logits = self.fc2(h)
        probabilities = torch.softmax(logits[:rows], dim=-1).reshape(samples, n, self.num_classes)
        energy = -torch.logsumexp(logits[rows:], dim=-1)
        if not self.has_bank:
            return probabilities, energy
        unit = f / torch.clamp(torch.linalg.vector_norm(f, dim=1, keepdim=True), min=1e-6)
        distance = 1.0 - torch.amax(unit @ self.bank_t, dim=1)
        return probabilities, energy, distance


class NaiveMcStep(_DigitServingBase):
    """One full stochastic pass: (image [N,28,28,1], mask1 [N,F], mask2 [N,H]) -> probabilities [N,C]."""

    def forward(self, image: torch.Tensor, mask1: torch.Tensor, mask2: torch.Tensor) -> torch.Tensor:
        f = self.features(self.normalize(image))
        h = torch.relu(self.fc1(f * mask1)) * mask2
        return torch.softmax(self.fc2(h), dim=-1)


class DeterministicServing(_DigitServingBase):
    """Eval mode, no masks: image [N,28,28,1] -> probabilities [N,C] (the cost baseline)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc2(torch.relu(self.fc1(self.features(self.normalize(image))))), dim=-1)


def naive_mc_probabilities(step, images: np.ndarray, mask1: np.ndarray, mask2: np.ndarray) -> np.ndarray:
    """The naive reference: the full network once per sample, [T, N, C].

    ``step`` is a :class:`NaiveMcStep` (torch) or an ONNX Runtime session of its export.
    """
    out = []
    for t in range(mask1.shape[0]):
        if isinstance(step, nn.Module):
            with torch.inference_mode():
                probs = step(torch.from_numpy(images), torch.from_numpy(mask1[t]), torch.from_numpy(mask2[t])).numpy()
        else:
            probs = step.run(None, {"image": images, "mask1": mask1[t], "mask2": mask2[t]})[0]
        out.append(probs)
    return np.stack(out)


# -- export ------------------------------------------------------------------------------------


def _export(module: nn.Module, example: tuple, dynamic_shapes: tuple, input_names, path: Path,
            output_names: tuple[str, ...] = (OUTPUT_NAME,)) -> onnx.ModelProto:
    return export_program(module, example, path, input_names, list(output_names), dynamic_shapes)


def _dims():
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=1, max=1024)
    return batch, samples


def _examples(wrapped: _DigitServingBase, samples: int, n: int, seed: int, p: float | None = None):
    from lensgraph.uncertainty.mc_dropout import make_masks

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
    m1, m2 = make_masks(samples, n, (wrapped.feature_dim, wrapped.hidden), wrapped.dropout_p if p is None else p, rng)
    return images, m1, m2


def export_mc_dropout(model: nn.Module, out_path: Path, bank: np.ndarray | None = None):
    """Export the efficient MC-dropout graph with its parity checks; returns an ExportReport.

    ``bank`` (unit-length trunk features of training digits, [K, F]) adds the ``distance`` output."""
    from lensgraph.export.artifacts import ExportReport, describe_io
    from lensgraph.runtime.session import SessionConfig, create_session

    model = model.eval()
    wrapped = McDropoutServing(model, bank).eval()
    images, m1, m2 = _examples(wrapped, 3, 2, seed=0)
    batch, samples = _dims()
    onnx_model = _export(
        wrapped,
        (torch.from_numpy(images), torch.from_numpy(m1), torch.from_numpy(m2)),
        ({0: batch}, {0: samples, 1: batch}, {0: samples, 1: batch}),
        INPUT_NAMES,
        out_path,
        (OUTPUT_NAME, ENERGY_NAME) + ((DISTANCE_NAME,) if bank is not None else ()),
    )
    if bank is not None:
        onnx_model = _drop_initializer_shapes(onnx_model, out_path)
    session = create_session(out_path, SessionConfig(intra_op_threads=2))
    checks: dict[str, float] = {}

    # 1. Deterministic: all-ones masks, T=1, against the eval-mode torch model itself.
    images, _, _ = _examples(wrapped, 1, 3, seed=1)
    ones1 = np.ones((1, 3, wrapped.feature_dim), np.float32)
    ones2 = np.ones((1, 3, wrapped.hidden), np.float32)
    with torch.inference_mode():
        x = wrapped.normalize(torch.from_numpy(images))
        logits = model(x)
        expected = torch.softmax(logits, dim=-1).numpy()[None]
        energy = (-torch.logsumexp(logits, dim=-1)).numpy()
    got, got_energy, *got_distance = session.run(None, {"image": images, "mask1": ones1, "mask2": ones2})
    checks["deterministic: T=1 all-ones masks vs eval-mode torch, uint8[3,28,28,1]"] = _parity(expected, got)
    scale = np.maximum(1.0, np.abs(energy))  # energies are tens of units: compared relative to their size
    checks["energy vs eval-mode torch (relative), uint8[3,28,28,1]"] = _parity(energy / scale, got_energy / scale)
    if bank is not None:
        with torch.inference_mode():
            distance = wrapped(torch.from_numpy(images), torch.from_numpy(ones1), torch.from_numpy(ones2))[2].numpy()
        checks["distance vs torch, uint8[3,28,28,1]"] = _parity(distance, got_distance[0])

    # 2. Stochastic: random masks, against the torch wrapper with the same masks.
    images, m1, m2 = _examples(wrapped, 5, 4, seed=2)
    with torch.inference_mode():
        expected = wrapped(torch.from_numpy(images), torch.from_numpy(m1), torch.from_numpy(m2))[0].numpy()
    got = session.run(None, {"image": images, "mask1": m1, "mask2": m2})[0]
    checks["MC: T=5 random masks vs torch with the same masks, uint8[4,28,28,1]"] = _parity(expected, got)

    worst = max(checks.values())
    if not worst <= PARITY_ATOL:
        raise WeightsError(f"ONNX Runtime differs from torch by {worst:.3g} (> {PARITY_ATOL}): {checks}")
    inputs, outputs = describe_io(onnx_model)
    settings: dict[str, Any] = {
        "exporter": "torch.onnx.export(dynamo=True), lensgraph.export.mc_dropout",
        "opset": OPSET,
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "dynamic_axes": ["samples", "batch"],
        "normalization_in_graph": {"mean": [model.mean * 255.0], "std": [model.std * 255.0]},
        "mc_dropout": {
            "form": "trunk once per image, head for T*N rows in one batched matmul",
            "dropout_p": wrapped.dropout_p,
            "feature_dim": wrapped.feature_dim,
            "hidden": wrapped.hidden,
            "masks": f"inverted dropout: 0 with probability p, else 1/(1-p); all ones = deterministic pass",
            "energy": "-logsumexp of the eval-mode logits, [N]: how far from the training digits",
            "distance": (f"1 - cosine similarity of the trunk's features to the nearest of {len(bank)} training "
                         "digits, [N]") if bank is not None else None,
        },
        "parity_checks": {k: float(f"{v:.3g}") for k, v in checks.items()},
    }
    return ExportReport(inputs, outputs, worst, "; ".join(checks), settings)


def _drop_initializer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """Remove value_info entries of initializers (the exporter writes them once the module has a buffer):
    tools that rewrite weights, such as ONNX Runtime's quantiser turning Gemm into a MatMul with the
    weight transposed, would otherwise meet the stale shape and fail."""
    names = {init.name for init in model.graph.initializer}
    kept = [vi for vi in model.graph.value_info if vi.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(path))
    return model


def export_naive_step(model: nn.Module, out_path: Path) -> onnx.ModelProto:
    """The naive form's one full stochastic pass (for tests and the cost benchmark)."""
    wrapped = NaiveMcStep(model.eval()).eval()
    images, m1, m2 = _examples(wrapped, 1, 2, seed=0)
    batch, _ = _dims()
    return _export(
        wrapped,
        (torch.from_numpy(images), torch.from_numpy(m1[0]), torch.from_numpy(m2[0])),
        ({0: batch}, {0: batch}, {0: batch}),
        INPUT_NAMES,
        out_path,
    )


def export_deterministic(model: nn.Module, out_path: Path) -> onnx.ModelProto:
    """Plain eval-mode graph (no masks): the one-deterministic-pass baseline of the cost table."""
    wrapped = DeterministicServing(model.eval()).eval()
    images, _, _ = _examples(wrapped, 1, 2, seed=0)
    batch, _ = _dims()
    return _export(wrapped, (torch.from_numpy(images),), ({0: batch},), ("image",), out_path)


def _parity(expected: np.ndarray, actual: np.ndarray) -> float:
    try:
        return max_abs_diff([expected], [actual])
    except ValueError as exc:
        raise WeightsError(str(exc)) from exc
