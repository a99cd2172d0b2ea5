"""EfficientNet-Lite0 in the layout of lukemelas' ``efficientnet_pytorch``, with TF "SAME" padding.

Why this exact layout: the real ImageNet weights we serve (``efficientnet-lite0-57934424.pth``,
converted from the official TF checkpoint) use those state-dict names, so they load with
``strict=True`` and no key mapping. Why TF-SAME padding: the weights were trained with it; a
stride-2 conv on an even input pads 0 before and 1 after, not 1 and 1. Symmetric padding still
classifies, but its probabilities drift (tench 0.7675 instead of TF's 0.8072).

Lite variants differ from EfficientNet-B0: no squeeze-excitation, ReLU6 instead of swish, and
a fixed stem (32) and head (1280) width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lensgraph.imaging.resize import PIL_BILINEAR

__all__ = ["BLOCK_STAGES", "Conv2dSame", "EfficientNetLite0", "MBConvBlock", "tf_same_pad"]

BN_EPS = 1e-3  # TF's default; torch's 1e-5 would shift every activation a little
BN_MOMENTUM = 0.01  # TF decay 0.99 expressed as torch momentum (matters only for training)

# (repeats, kernel, stride, expand ratio, in channels, out channels), from the Lite0 paper/config.
BLOCK_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def tf_same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding TF "SAME" adds along one axis of length ``size``.

    TF pads so that ``out = ceil(size / stride)`` and puts the odd pixel *after*. Written with
    ``%`` and ``//`` only (no ``max``/``ceil``) so a symbolic size from ``torch.export`` stays an
    expression instead of being specialised; ``total`` is never negative when
    ``(kernel - 1) * dilation + 1 >= stride``, which :class:`Conv2dSame` checks.
    """
    total = (-size) % stride + (kernel - 1) * dilation + 1 - stride
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TF "SAME" padding computed from the input's H and W at run time.

    Parameters and state-dict keys are those of ``nn.Conv2d``. Stride 1 with an odd effective
    kernel pads symmetrically, so it uses the conv's own padding (no extra Pad node in ONNX);
    otherwise ``F.pad`` runs before the conv, which exports with dynamic batch and spatial axes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, dilation: int = 1, bias: bool = False) -> None:
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"TF-SAME with kernel {kernel_size} < stride {stride} is not supported")
        self._static = stride == 1 and effective % 2 == 1
        padding = (effective - 1) // 2 if self._static else 0
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._static:
            top, bottom = tf_same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
            left, right = tf_same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
            x = F.pad(x, [left, right, top, bottom])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, ReLU6, no SE, no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _blocks() -> nn.ModuleList:
    blocks = []
    for repeats, kernel, stride, expand, c_in, c_out in BLOCK_STAGES:
        for i in range(repeats):
            blocks.append(MBConvBlock(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
    return nn.ModuleList(blocks)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier: ``forward`` gives logits, ``embed`` the pooled 1280-d features.

    ``_dropout`` (p=0.2 before ``_fc``, as in training) has no parameters and is the identity in
    eval mode, so it does not affect the state dict or inference.
    """

    embedding_dim: int = 1280
    stem_channels: int = 32

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._conv_stem = Conv2dSame(3, self.stem_channels, 3, stride=2)
        self._bn0 = _bn(self.stem_channels)
        self._blocks = _blocks()
        self._conv_head = Conv2dSame(BLOCK_STAGES[-1][5], self.embedding_dim, 1)
        self._bn1 = _bn(self.embedding_dim)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.embedding_dim, num_classes)

    @property
    def preprocessing(self) -> dict[str, object]:
        """TF EfficientNet-Lite constants (127/128), not ImageNet mean/std: see the module docstring."""
        return {"resize_shorter": 256, "crop": 224, "interpolation": "bilinear",
            "resize": dict(PIL_BILINEAR.describe()),
                "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "color": "RGB"}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] normalised -> [N, 1280, H/32, W/32] feature map."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> globally average-pooled embedding [N, 1280]."""
        return self.features(x).mean(dim=(2, 3))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """[N, 1280] -> logits [N, num_classes]."""
        return self._fc(self._dropout(embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))
