"""ResNet18/ResNet50 with torchvision's exact module names, so its checkpoints load with strict=True.

torchvision itself is not a dependency (it pins torch and drags in image codecs we do not use),
so the architecture is written out here. Layout is torchvision's "v1.5": in a Bottleneck the
stride sits on the 3x3 conv, and downsampling shortcuts are ``downsample.0`` (1x1 conv) and
``downsample.1`` (BN). Parameter counts match torchvision's published ones: 11,689,512 for
resnet18 and 25,557,032 for resnet50.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lensgraph.imaging.resize import PIL_BILINEAR

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION_WEIGHTS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet50",
]

# ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) in 0..255 pixel units.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def _preprocessing(resize_shorter: int, crop: int = 224) -> dict[str, Any]:
    return {"resize_shorter": resize_shorter, "crop": crop, "interpolation": "bilinear",
            "resize": dict(PIL_BILINEAR.describe()),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "color": "RGB"}


# torchvision's released ImageNet weights. The file name ends in the first 8 hex digits of the
# file's sha256 (torchvision checks that prefix on download). Each set of weights was evaluated
# with its own resize; V2 recipes use a larger resize than V1's 256.
TORCHVISION_WEIGHTS: dict[str, dict[str, Any]] = {
    "resnet18": {
        "architecture": "resnet18",
        "torchvision_weights": "ResNet18_Weights.IMAGENET1K_V1",
        "url": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "sha256_prefix": "f37072fd",
        "preprocessing": _preprocessing(256),
    },
    "resnet50": {
        "architecture": "resnet50",
        "torchvision_weights": "ResNet50_Weights.IMAGENET1K_V2",
        "url": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        "sha256_prefix": "11ad3fa6",
        "preprocessing": _preprocessing(232),
    },
    "resnet50_v1": {
        "architecture": "resnet50",
        "torchvision_weights": "ResNet50_Weights.IMAGENET1K_V1",
        "url": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "sha256_prefix": "0676ba61",
        "preprocessing": _preprocessing(256),
    },
}


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride: torchvision v1.5) -> 1x1 expand x4 (ResNet50+)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """torchvision-compatible ResNet: ``forward`` gives logits, ``embed`` the pooled features."""

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000,
                 preprocessing: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_dim = 512 * block.expansion
        self._preprocessing = dict(preprocessing or _preprocessing(256))
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        self._init_weights()

    def _make_layer(self, block: Block, width: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        out_channels = width * block.expansion
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(self._in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        layers = [block(self._in_channels, width, stride, downsample)]
        self._in_channels = out_channels
        layers += [block(out_channels, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        """torchvision's initialisation, so seeded random models look like untrained torchvision ones."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, list) else v for k, v in self._preprocessing.items()}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] (ImageNet-normalised) -> pooled embedding [N, embedding_dim]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.fc(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet18; preprocessing of torchvision's IMAGENET1K_V1 weights (resize 256, crop 224)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, TORCHVISION_WEIGHTS["resnet18"]["preprocessing"])


def resnet50(num_classes: int = 1000, recipe: str = "resnet50") -> ResNet:
    """ResNet50 declaring the preprocessing of the TORCHVISION_WEIGHTS entry ``recipe``.

    The default ``"resnet50"`` is IMAGENET1K_V2 (resize 232, crop 224); ``"resnet50_v1"`` is
    IMAGENET1K_V1 (resize 256). Only the declared preprocessing differs; nothing is downloaded.
    """
    if recipe not in ("resnet50", "resnet50_v1"):
        raise ValueError(f"recipe must be 'resnet50' (IMAGENET1K_V2) or 'resnet50_v1', got {recipe!r}")
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, TORCHVISION_WEIGHTS[recipe]["preprocessing"])
