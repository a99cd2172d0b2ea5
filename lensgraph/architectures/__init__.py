"""The torch architectures lensgraph can build and export, by name.

torch is a build-time dependency only: this registry imports no torch itself (each builder
imports its module when called), so listing architectures (``lensgraph export --list``) and
``import lensgraph`` stay light. Serving never builds these; it runs the exported ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "ArchitectureInfo", "build_architecture"]

Kind = Literal["classifier", "heatmap_landmarks", "digits"]


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a registry entry builds: ``input_shape`` is (C, H, W), without the batch axis."""

    name: str
    builder: Callable[..., nn.Module]
    kind: Kind
    input_shape: tuple[int, int, int]
    description: str


def _efficientnet_lite0(**kwargs: Any) -> nn.Module:
    from lensgraph.architectures.efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0(**kwargs)


def _resnet18(**kwargs: Any) -> nn.Module:
    from lensgraph.architectures.resnet import resnet18

    return resnet18(**kwargs)


def _resnet50(**kwargs: Any) -> nn.Module:
    from lensgraph.architectures.resnet import resnet50

    return resnet50(**kwargs)


def _landmark_unet(**kwargs: Any) -> nn.Module:
    from lensgraph.architectures.unet import LandmarkUNet

    return LandmarkUNet(**kwargs)


def _digit_cnn(**kwargs: Any) -> nn.Module:
    from lensgraph.architectures.digit_cnn import DigitCNN

    return DigitCNN(**kwargs)


ARCHITECTURES: dict[str, ArchitectureInfo] = {
    info.name: info
    for info in (
        ArchitectureInfo("efficientnet_lite0", _efficientnet_lite0, "classifier", (3, 224, 224),
                         "EfficientNet-Lite0 (TF-SAME padding, lukemelas key names), 1280-d embedding"),
        ArchitectureInfo("resnet18", _resnet18, "classifier", (3, 224, 224),
                         "ResNet18 with torchvision's state-dict layout, 512-d embedding"),
        ArchitectureInfo("resnet50", _resnet50, "classifier", (3, 224, 224),
                         "ResNet50 (v1.5) with torchvision's state-dict layout, 2048-d embedding"),
        ArchitectureInfo("landmark_unet", _landmark_unet, "heatmap_landmarks", (1, 96, 96),
                         "UNet: 96x96 grayscale face crop -> 15 landmark heatmap logits"),
        ArchitectureInfo("digit_cnn", _digit_cnn, "digits", (1, 28, 28),
                         "MNIST CNN: deterministic features + dropout head for MC-dropout uncertainty"),
    )
}


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """A fresh (randomly initialised) module; ``kwargs`` go to its constructor."""
    info = ARCHITECTURES.get(name)
    if info is None:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    try:
        return info.builder(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for architecture {name!r}: {exc}") from exc
