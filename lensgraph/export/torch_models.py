"""Instantiate the torch module a spec asks for and work out its serving input.

The module is one of our architectures or a user's class from a file; its weights are a
checkpoint (loaded strictly) or seeded random values for tests and demos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TorchModel:
    module: Any
    image_shape: tuple[int, int, int]  # C, H, W
    mean: list[float]
    std: list[float]


def instantiate(
    architecture: str | None,
    architecture_args: dict[str, Any],
    model_file: Path | None,
    class_name: str | None,
    init_args: dict[str, Any],
    seed: int | None,
):
    """Build the module; with ``seed`` its random initialisation is reproducible."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    if architecture:
        from lensgraph.architectures import build_architecture

        return build_architecture(architecture, **architecture_args)
    from lensgraph.export.user_model import instantiate as instantiate_user

    return instantiate_user(model_file, class_name, init_args)


def load_weights(module, weights_path: Path | None, source: str) -> None:
    if weights_path is None:
        return
    from lensgraph.architectures.state_dict import load_state_dict_strict, load_weights_file

    load_state_dict_strict(module, load_weights_file(weights_path), source=source)


def serving_input(
    module,
    architecture: str | None,
    input_shape: list[int] | None,
    normalization: tuple[list[float], list[float]] | None,
) -> TorchModel:
    """(C, H, W) and mean/std in pixel units: explicit values win, else what the module declares."""
    shape: tuple[int, ...] | None = tuple(input_shape) if input_shape else None
    preprocessing = getattr(module, "preprocessing", None)
    if shape is None and isinstance(preprocessing, dict) and "crop" in preprocessing:
        shape = (3, int(preprocessing["crop"]), int(preprocessing["crop"]))
    if shape is None and architecture:
        from lensgraph.architectures import ARCHITECTURES

        shape = tuple(ARCHITECTURES[architecture].input_shape)
    if shape is None or len(shape) != 3:
        raise ValueError("give input_shape as C,H,W for this model (e.g. 1,96,96)")
    channels = shape[0]
    if normalization is not None:
        mean, std = list(normalization[0]), list(normalization[1])
    elif isinstance(preprocessing, dict) and "mean" in preprocessing:
        mean, std = list(preprocessing["mean"]), list(preprocessing["std"])
    elif hasattr(module, "mean") and hasattr(module, "std") and isinstance(module.mean, float):
        mean, std = [module.mean * 255.0] * channels, [module.std * 255.0] * channels
    else:
        mean, std = [0.0] * channels, [255.0] * channels  # plain [0, 1] scaling
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels:
        raise ValueError(f"normalisation has {len(mean)} values for {channels} channels")
    return TorchModel(module, (int(shape[0]), int(shape[1]), int(shape[2])), mean, std)
