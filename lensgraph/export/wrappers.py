"""Serving wrappers: put the preprocessing that belongs to a model inside its ONNX graph.

The serving graph moves uint8 NHWC images between deployments (4x smaller than float32 and the
layout decoders produce); these wrappers cast, transpose and normalise inside the graph, so the
numbers a model was trained with travel with the artefact rather than living in Python code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ImageNormalizer(nn.Module):
    """uint8 NHWC -> float32 NCHW, ``(x - mean) / std`` with mean/std in 0..255 pixel units."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError("mean and std need one value per channel")
        if any(s == 0 for s in std):
            raise ValueError("std values must be non-zero")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.mean) * self.inv_std


class ClassifierServing(nn.Module):
    """uint8 image -> (softmax probabilities, pooled embedding).

    With ``resize_to`` the graph also resizes any HxW to the network size (bilinear), for
    single-image callers who do not want to preprocess; the serving graph crops in Python instead.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        resize_to: int | None = None,
    ) -> None:
        super().__init__()
        self.normalize = ImageNormalizer(mean, std)
        self.model = model
        self.resize_to = resize_to

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(image)
        if self.resize_to is not None:
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        embedding = self.model.embed(x)
        probabilities = torch.softmax(self.model.classify(embedding), dim=-1)
        return probabilities, embedding


class NormalizedModel(nn.Module):
    """uint8 NHWC input in front of any single-input model (UNet heatmaps, digits, a user's model)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = ImageNormalizer(mean, std)
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(image))
