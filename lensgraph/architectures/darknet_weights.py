"""Darknet ``.weights`` files: read, write (byte-exact round trip), load into a module, seeded random ones.

The format (pjreddie's ``load_weights``/``save_weights``): a header of int32 ``major, minor, revision``,
then ``seen`` (images trained on) as int64 when ``major*10 + minor >= 2 and major < 1000 and minor < 1000``,
else as int32; then, for every [convolutional] layer in cfg order, float32 little-endian ``biases``,
and when the layer has ``batch_normalize``: ``scales, rolling_mean, rolling_var``, then the
``filters x channels x size x size`` weights. Nothing says where a layer ends, so a file is only
meaningful with its cfg: one that is shorter or longer than the cfg needs is refused, naming both sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lensgraph.architectures.darknet_cfg import ConvLayer, DarknetCfg
from lensgraph.errors import WeightsError

__all__ = ["DarknetWeightsError", "Header", "ConvWeights", "DarknetWeights", "read_weights", "parse_weights",
           "expected_size", "random_weights", "load_into", "from_module"]

FLOAT = np.dtype("<f4")


class DarknetWeightsError(WeightsError, ValueError):
    """A .weights file that does not fit its cfg (too short, too long, bad header)."""


@dataclass(frozen=True)
class Header:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_int64(self) -> bool:
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def size(self) -> int:
        return 12 + (8 if self.seen_is_int64 else 4)

    def to_bytes(self) -> bytes:
        seen_format = "<q" if self.seen_is_int64 else "<i"
        return struct.pack("<iii", self.major, self.minor, self.revision) + struct.pack(seen_format, self.seen)


@dataclass
class ConvWeights:
    """One convolutional layer's arrays, float32, in file order; BN arrays are None without batch_normalize."""

    biases: np.ndarray
    weights: np.ndarray  # [filters, channels, size, size]
    scales: np.ndarray | None = None
    rolling_mean: np.ndarray | None = None
    rolling_var: np.ndarray | None = None

    def arrays(self) -> list[np.ndarray]:
        bn = [self.scales, self.rolling_mean, self.rolling_var] if self.scales is not None else []
        return [self.biases, *bn, self.weights]


@dataclass
class DarknetWeights:
    header: Header = field(default_factory=Header)
    convs: list[ConvWeights] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        parts = [self.header.to_bytes()]
        parts += [np.ascontiguousarray(a, dtype=FLOAT).tobytes() for conv in self.convs for a in conv.arrays()]
        return b"".join(parts)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path


def expected_size(cfg: DarknetCfg, header: Header = Header()) -> int:
    """Bytes of a complete .weights file for ``cfg`` with this header's ``seen`` width."""
    return header.size + 4 * cfg.value_count


def read_weights(path: str | Path, cfg: DarknetCfg) -> DarknetWeights:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DarknetWeightsError(f"cannot read darknet weights {path}: {exc}") from exc
    return parse_weights(data, cfg, source=str(path))


def parse_weights(data: bytes, cfg: DarknetCfg, source: str = "<weights>") -> DarknetWeights:
    if len(data) < 16:
        raise DarknetWeightsError(f"{source} is {len(data)} bytes, too short for even a darknet header "
                                  "(16 or 20 bytes)")
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    header = Header(major, minor, revision, 0)
    if header.seen_is_int64 and len(data) < 20:
        raise DarknetWeightsError(f"{source} is {len(data)} bytes, too short for a version {major}.{minor} "
                                  "header (20 bytes)")
    (seen,) = struct.unpack_from("<q" if header.seen_is_int64 else "<i", data, 12)
    header = Header(major, minor, revision, seen)
    expected = expected_size(cfg, header)
    if len(data) != expected:
        where = _short_layer(cfg, len(data) - header.size) if len(data) < expected else ""
        kind = "too short" if len(data) < expected else "too long"
        raise DarknetWeightsError(
            f"{source} is {kind} for {cfg.source or 'the cfg'}: expected {expected} bytes "
            f"({header.size}-byte header + {cfg.value_count} float32 values for {len(cfg.convs)} convolutional "
            f"layers), got {len(data)} ({len(data) - expected:+d}){where}; wrong cfg, or a truncated download?",
            expected_bytes=expected, actual_bytes=len(data))
    values = np.frombuffer(data, dtype=FLOAT, offset=header.size)
    convs, at = [], 0
    for conv in cfg.convs:
        arrays = []
        for count in _counts(conv):
            arrays.append(values[at : at + count].copy())
            at += count
        weights = arrays[-1].reshape(conv.filters, conv.in_channels, conv.size, conv.size)
        bn = arrays[1:4] if conv.batch_normalize else [None, None, None]
        convs.append(ConvWeights(arrays[0], weights, *bn))
    return DarknetWeights(header, convs)


def _counts(conv: ConvLayer) -> list[int]:
    return [conv.filters] * (4 if conv.batch_normalize else 1) + [conv.weight_count]


def _short_layer(cfg: DarknetCfg, available_bytes: int) -> str:
    at = 0
    for conv in cfg.convs:
        at += 4 * conv.value_count
        if at > available_bytes:
            return f"; the data ends inside convolutional layer {conv.index} (filters={conv.filters})"
    return ""


def random_weights(cfg: DarknetCfg, seed: int) -> DarknetWeights:
    """Seeded random weights for tests and demos: He-scaled kernels, BN statistics near identity,
    so activations keep about unit scale through the network (outputs finite, parity meaningful)."""
    rng = np.random.default_rng(seed)
    convs = []
    for conv in cfg.convs:
        fan_in = conv.in_channels * conv.size * conv.size
        weights = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(conv.filters, conv.in_channels, conv.size, conv.size))
        biases = rng.normal(0.0, 0.1, conv.filters)
        bn = [None, None, None]
        if conv.batch_normalize:
            bn = [rng.uniform(0.5, 1.5, conv.filters), rng.normal(0.0, 0.1, conv.filters),
                  rng.uniform(0.5, 1.5, conv.filters)]
        convs.append(ConvWeights(*(None if a is None else np.asarray(a, FLOAT) for a in (biases, weights, *bn))))
    return DarknetWeights(Header(0, 2, 0, 0), convs)


def load_into(module, weights: DarknetWeights) -> None:
    """Copy ``weights`` into a lensgraph.architectures.darknet.Darknet built from the same cfg."""
    import torch

    layers = module.convs
    if len(layers) != len(weights.convs):
        raise DarknetWeightsError(f"the weights hold {len(weights.convs)} convolutional layers, "
                                  f"the module {len(layers)}")
    with torch.no_grad():
        for layer, conv in zip(layers, weights.convs):
            pairs = [(layer.biases, conv.biases), (layer.weight, conv.weights)]
            if layer.spec.batch_normalize:
                if conv.scales is None:
                    raise DarknetWeightsError(f"layer {layer.spec.index} has batch_normalize, "
                                              "but the weights have no scales")
                pairs += [(layer.scales, conv.scales), (layer.rolling_mean, conv.rolling_mean),
                          (layer.rolling_var, conv.rolling_var)]
            for target, value in pairs:
                if tuple(target.shape) != tuple(np.shape(value)):
                    raise DarknetWeightsError(f"layer {layer.spec.index}: expected {list(target.shape)}, "
                                              f"got {list(np.shape(value))}")
                target.copy_(torch.from_numpy(np.asarray(value, FLOAT)))


def from_module(module, header: Header = Header()) -> DarknetWeights:
    """A module's parameters as a darknet weights file (the inverse of :func:`load_into`)."""
    def get(tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(FLOAT)

    convs = []
    for layer in module.convs:
        bn = [None, None, None]
        if layer.spec.batch_normalize:
            bn = [get(layer.scales), get(layer.rolling_mean), get(layer.rolling_var)]
        convs.append(ConvWeights(get(layer.biases), get(layer.weight), *bn))
    return DarknetWeights(header, convs)
