"""A small UNet that turns a 96x96 grayscale face crop into one heatmap per facial landmark.

Why heatmaps: a per-pixel map keeps spatial uncertainty (a spread-out peak is a doubtful point)
and localises better than regressing 30 numbers from a pooled vector. Outputs are logits; the
decoder in ``lensgraph.postprocess`` applies the softmax/argmax it needs. Every spatial size
must be divisible by ``2**depth`` so each upsampled map lines up with its skip connection.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DoubleConv", "LandmarkUNet"]


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2, spatial size preserved."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class LandmarkUNet(nn.Module):
    """[N, in_channels, S, S] -> heatmap logits [N, num_landmarks, S, S] (S = ``input_size``, 96).

    ``base_channels`` is the first level's width (doubling per level); ``depth`` is the number
    of 2x poolings. Upsampling is a stride-2 transposed conv, which exports to ONNX as one node.
    """

    def __init__(self, in_channels: int = 1, num_landmarks: int = 15, base_channels: int = 16,
                 depth: int = 3, input_size: int = 96) -> None:
        super().__init__()
        _validate(in_channels, num_landmarks, base_channels, depth, input_size)
        self.in_channels = in_channels
        self.num_landmarks = num_landmarks
        self.depth = depth
        self.input_size = input_size
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[depth - 1], widths[depth])
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_landmarks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamples, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)


def _validate(in_channels: int, num_landmarks: int, base_channels: int, depth: int, input_size: int) -> None:
    for name, value in (("in_channels", in_channels), ("num_landmarks", num_landmarks),
                        ("base_channels", base_channels), ("depth", depth), ("input_size", input_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if input_size % 2**depth:
        valid = [d for d in range(1, 8) if input_size % 2**d == 0]
        raise ValueError(
            f"depth {depth} needs the input size to be divisible by {2**depth}; "
            f"{input_size} is not (valid depths for {input_size}: {valid})"
        )
