"""Darknet ``.cfg`` files -> a checked list of layers with their shapes (no torch needed).

Read the way pjreddie's ``parser.c`` reads them (the Debian package's darknet): whitespace is removed
from every line, ``#`` and ``;`` start comments, ``[section]`` opens a layer and ``key=value`` sets an
option. Only what YOLOv2-style networks need is accepted ([net], [convolutional], [maxpool],
[region]); anything else is refused by name rather than silently built wrong. Shapes follow darknet:

* convolution: ``padding = size // 2`` when ``pad=1`` (else ``padding``, default 0);
  ``out = (in + 2*padding - size) // stride + 1``;
* maxpool: ``padding`` defaults to ``size - 1``; ``out = (in + padding - size) // stride + 1``; the window
  starts ``padding // 2`` before the input, and positions outside it are ignored (so ``size=2 stride=1``
  keeps 13x13 by looking one cell right and down, past the edge only at the last row and column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from lensgraph.errors import WeightsError
from lensgraph.postprocess.yolo_region import RegionSpec

__all__ = ["CfgError", "ConvLayer", "MaxPoolLayer", "DarknetCfg", "parse_cfg", "read_cfg"]

ACTIVATIONS = ("leaky", "linear")
SECTION_ALIASES = {"net": "net", "network": "net", "convolutional": "convolutional", "conv": "convolutional",
                   "maxpool": "maxpool", "max": "maxpool", "region": "region"}


class CfgError(WeightsError, ValueError):
    """A cfg file that this builder cannot reproduce exactly; the message names the line and section."""


@dataclass(frozen=True)
class ConvLayer:
    index: int
    in_channels: int
    filters: int
    size: int
    stride: int
    padding: int
    batch_normalize: bool
    activation: str
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def weight_count(self) -> int:
        return self.filters * self.in_channels * self.size * self.size

    @property
    def value_count(self) -> int:
        """Floats this layer takes in a .weights file: biases (+ scales, means, variances) + weights."""
        return self.filters * (4 if self.batch_normalize else 1) + self.weight_count


@dataclass(frozen=True)
class MaxPoolLayer:
    index: int
    channels: int
    size: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]


Layer = Union[ConvLayer, MaxPoolLayer]


@dataclass(frozen=True)
class DarknetCfg:
    """The network: input size, layers in order, and the [region] layer that reads the last output."""

    width: int
    height: int
    channels: int
    layers: tuple[Layer, ...]
    region: RegionSpec
    source: str = ""

    @property
    def convs(self) -> tuple[ConvLayer, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, ConvLayer))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the region input, the raw tensor the exported graph returns."""
        last = self.convs[-1]
        return last.filters, last.out_hw[0], last.out_hw[1]

    @property
    def value_count(self) -> int:
        return sum(conv.value_count for conv in self.convs)


def read_cfg(path: str | Path) -> DarknetCfg:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CfgError(f"cannot read darknet cfg {path}: {exc}") from exc
    return parse_cfg(text, source=str(path))


def _sections(text: str, source: str) -> list[tuple[str, int, dict[str, str]]]:
    sections: list[tuple[str, int, dict[str, str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{source}:{number}: unterminated section header {raw.strip()!r}")
            sections.append((line[1:-1].lower(), number, {}))
            continue
        if not sections:
            raise CfgError(f"{source}:{number}: option {raw.strip()!r} before the first [section]")
        if "=" not in line:
            raise CfgError(f"{source}:{number}: expected key=value, got {raw.strip()!r}")
        key, value = line.split("=", 1)
        sections[-1][2][key] = value
    return sections


class _Options:
    """One section's options, read with darknet's defaults and errors that say where."""

    def __init__(self, name: str, line: int, values: dict[str, str], source: str) -> None:
        self.name, self.line, self.values, self.source = name, line, values, source

    def where(self) -> str:
        return f"{self.source}:{self.line} [{self.name}]"

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.values:
            if default is None:
                raise CfgError(f"{self.where()}: missing {key}=")
            return default
        try:
            return int(self.values[key])
        except ValueError as exc:
            raise CfgError(f"{self.where()}: {key}={self.values[key]!r} is not an integer") from exc

    def floats(self, key: str) -> list[float]:
        try:
            return [float(v) for v in self.values.get(key, "").split(",") if v]
        except ValueError as exc:
            raise CfgError(f"{self.where()}: {key}={self.values[key]!r} is not a list of numbers") from exc


def parse_cfg(text: str, source: str = "<cfg>") -> DarknetCfg:
    sections = _sections(text, source)
    if not sections or SECTION_ALIASES.get(sections[0][0]) != "net":
        raise CfgError(f"{source}: a darknet cfg starts with [net] (or [network])")
    net = _Options("net", sections[0][1], sections[0][2], source)
    width, height, channels = net.int("width", 0), net.int("height", 0), net.int("channels", 0)
    if min(width, height, channels) < 1:
        raise CfgError(f"{net.where()}: needs positive width, height and channels")
    c, h, w = channels, height, width
    layers: list[Layer] = []
    region: RegionSpec | None = None
    for name, line, values in sections[1:]:
        kind = SECTION_ALIASES.get(name)
        opts = _Options(name, line, values, source)
        if region is not None:
            raise CfgError(f"{opts.where()}: layers after [region] are not supported")
        if kind == "convolutional":
            layer = _conv(opts, len(layers), c, h, w)
            c, (h, w) = layer.filters, layer.out_hw
        elif kind == "maxpool":
            layer = _maxpool(opts, len(layers), c, h, w)
            h, w = layer.out_hw
        elif kind == "region":
            region = _region(opts, c)
            continue
        else:
            raise CfgError(f"{opts.where()}: layer type [{name}] is not supported "
                           "(supported: [convolutional], [maxpool], [region])")
        if h < 1 or w < 1:
            raise CfgError(f"{opts.where()}: output size {h}x{w} is empty")
        layers.append(layer)
    if region is None:
        raise CfgError(f"{source}: no [region] layer; only YOLOv2-style detectors are supported")
    if not layers or not isinstance(layers[-1], ConvLayer):
        raise CfgError(f"{source}: the [region] layer must follow a [convolutional] layer")
    return DarknetCfg(width, height, channels, tuple(layers), region, source)


def _conv(opts: _Options, index: int, c: int, h: int, w: int) -> ConvLayer:
    filters, size, stride = opts.int("filters", 1), opts.int("size", 1), opts.int("stride", 1)
    padding = size // 2 if opts.int("pad", 0) else opts.int("padding", 0)
    activation = opts.values.get("activation", "logistic")
    if activation not in ACTIVATIONS:
        raise CfgError(f"{opts.where()}: activation={activation} is not supported "
                       f"(supported: {', '.join(ACTIVATIONS)})")
    for key, plain in (("groups", 1), ("binary", 0), ("xnor", 0), ("dilation", 1)):
        if opts.int(key, plain) != plain:
            raise CfgError(f"{opts.where()}: {key}={opts.values[key]} is not supported (only {key}={plain})")
    if min(filters, size, stride) < 1:
        raise CfgError(f"{opts.where()}: filters, size and stride must be positive")
    out = ((h + 2 * padding - size) // stride + 1, (w + 2 * padding - size) // stride + 1)
    return ConvLayer(index, c, filters, size, stride, padding, bool(opts.int("batch_normalize", 0)), activation,
                     (h, w), out)


def _maxpool(opts: _Options, index: int, c: int, h: int, w: int) -> MaxPoolLayer:
    stride = opts.int("stride", 1)
    size = opts.int("size", stride)
    padding = opts.int("padding", size - 1)
    if min(size, stride) < 1 or padding < 0:
        raise CfgError(f"{opts.where()}: size and stride must be positive, padding not negative")
    out = ((h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
    return MaxPoolLayer(index, c, size, stride, padding, (h, w), out)


def _region(opts: _Options, channels: int) -> RegionSpec:
    classes, coords, num = opts.int("classes", 20), opts.int("coords", 4), opts.int("num", 1)
    for key, expected in (("softmax", 1), ("background", 0)):
        if opts.int(key, 0) != expected:
            raise CfgError(f"{opts.where()}: only {key}={expected} is supported")
    if "tree" in opts.values or "map" in opts.values:
        raise CfgError(f"{opts.where()}: softmax trees (YOLO9000) are not supported")
    try:
        region = RegionSpec.from_flat(opts.floats("anchors"), classes, num, coords)
    except ValueError as exc:
        raise CfgError(f"{opts.where()}: {exc}") from exc
    if region.channels != channels:
        raise CfgError(f"{opts.where()}: num={num} anchors x (coords {coords} + 1 + classes {classes}) = "
                       f"{region.channels} channels, but the layer before gives {channels}")
    return region
