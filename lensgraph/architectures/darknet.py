"""A darknet YOLOv2 network (e.g. ``yolov2-tiny-voc.cfg``) as a torch module with darknet's exact forward.

Why not torch's BatchNorm2d and MaxPool2d: darknet normalises with ``(x - mean) / (sqrt(var) + 1e-6)``
(pjreddie's ``normalize_cpu``, not ``sqrt(var + eps)``) and pools with an asymmetric window
(``padding // 2`` before, the rest after, out-of-image positions ignored), which neither reproduces.
The module returns the raw tensor the [region] layer reads, ``[N, num*(5+classes), H, W]``; decoding
is lensgraph.postprocess.yolo_region. Parameters keep darknet's names (``biases``, ``scales``,
``rolling_mean``, ``rolling_var``, ``weight``) so lensgraph.architectures.darknet_weights can fill them
in file order.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lensgraph.architectures.darknet_cfg import ConvLayer, DarknetCfg, MaxPoolLayer, read_cfg

__all__ = ["DarknetConv", "DarknetMaxPool", "Darknet", "build_darknet"]

BN_EPSILON = 1e-6  # pjreddie darknet: x_hat = (x - mean) / (sqrt(var) + .000001f)
LEAKY_SLOPE = 0.1


class DarknetConv(nn.Module):
    """convolution (no bias) -> [darknet batch norm with scales] -> + biases -> leaky or linear."""

    def __init__(self, spec: ConvLayer) -> None:
        super().__init__()
        self.spec = spec
        self.weight = nn.Parameter(torch.zeros(spec.filters, spec.in_channels, spec.size, spec.size))
        self.biases = nn.Parameter(torch.zeros(spec.filters))
        if spec.batch_normalize:
            self.scales = nn.Parameter(torch.ones(spec.filters))
            self.register_buffer("rolling_mean", torch.zeros(spec.filters))
            self.register_buffer("rolling_var", torch.ones(spec.filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.spec.stride, self.spec.padding)
        if self.spec.batch_normalize:
            shape = (1, -1, 1, 1)
            x = (x - self.rolling_mean.view(shape)) / (torch.sqrt(self.rolling_var.view(shape)) + BN_EPSILON)
            x = x * self.scales.view(shape)
        x = x + self.biases.view(1, -1, 1, 1)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.spec.activation == "leaky" else x


class DarknetMaxPool(nn.Module):
    """darknet's max pool: ``padding // 2`` cells of -inf before, what the output size needs after."""

    def __init__(self, spec: MaxPoolLayer) -> None:
        super().__init__()
        self.spec = spec
        (in_h, in_w), (out_h, out_w) = spec.in_hw, spec.out_hw
        before = spec.padding // 2
        after_h = (out_h - 1) * spec.stride + spec.size - in_h - before
        after_w = (out_w - 1) * spec.stride + spec.size - in_w - before
        self.pads = (before, after_w, before, after_h)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, mode="constant", value=float("-inf"))
        return F.max_pool2d(x, self.spec.size, self.spec.stride)


class Darknet(nn.Module):
    """The layers of a parsed cfg in order; ``forward`` takes float NCHW RGB in [0, 1], as darknet does."""

    def __init__(self, cfg: DarknetCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            DarknetConv(layer) if isinstance(layer, ConvLayer) else DarknetMaxPool(layer) for layer in cfg.layers
        )

    @property
    def convs(self) -> list[DarknetConv]:
        return [m for m in self.layers if isinstance(m, DarknetConv)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def build_darknet(cfg: str | Path | DarknetCfg) -> tuple[Darknet, DarknetCfg]:
    """The module for a cfg file (weights zero until loaded) and the parsed cfg: ``cfg.region`` (anchors,
    classes, num), ``cfg.width``/``cfg.height`` (the network input) and ``cfg.output_shape``."""
    parsed = cfg if isinstance(cfg, DarknetCfg) else read_cfg(cfg)
    return Darknet(parsed).eval(), parsed
