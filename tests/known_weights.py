"""Weights whose outputs are known exactly, so a served model's answers can be checked to the pixel.

``shift_unet``: a heatmap UNet (lensgraph.architectures.unet) whose heatmap k is the input image
shifted by ``SHIFTS[k]`` (times ``gain``), built from 3x3 kernels with a single 1 in them. A crop
with one bright pixel at (x, y) therefore puts landmark k at (x, y) - SHIFTS[k]: fifteen different,
known points, through the real export, ONNX Runtime, batching, decoding and coordinate mapping.
"""

from __future__ import annotations

from pathlib import Path

# Fifteen distinct (dx, dy) shifts within the reach of two 3x3 convolutions (|d| <= 2).
SHIFTS = [(dx, dy) for dy in (-2, -1, 0, 1, 2) for dx in (-2, 0, 2)]


def _split(shift: int) -> tuple[int, int]:
    """A shift of up to 2 as two steps of up to 1 (one per 3x3 convolution)."""
    first = max(-1, min(1, shift))
    return first, shift - first


def shift_unet(path: Path, gain: float = 20.0, base_channels: int = 16, depth: int = 3) -> Path:
    """Save the shift UNet's state dict (LandmarkUNet's keys) at ``path``."""
    import torch

    from lensgraph.architectures.unet import LandmarkUNet

    model = LandmarkUNet(base_channels=base_channels, depth=depth)
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for key in state:
        if key.endswith("running_var") or (key.endswith(".weight") and state[key].ndim == 1):
            state[key].fill_(1.0)  # BatchNorm: identity (scale 1, variance 1, mean 0, shift 0)
    first, second = "encoders.0.0.weight", "encoders.0.3.weight"
    last = f"decoders.{depth - 1}"
    for k, (dx, dy) in enumerate(SHIFTS):
        (ax, bx), (ay, by) = _split(dx), _split(dy)
        # out(y, x) = in(y + a_y, x + a_x): cross-correlation with a 1 at (1 + a_y, 1 + a_x)
        state[first][k, 0, 1 + ay, 1 + ax] = 1.0
        state[second][k, k, 1 + by, 1 + bx] = 1.0
        state[f"{last}.0.weight"][k, base_channels + k, 1, 1] = 1.0  # the skip half of the concatenation
        state[f"{last}.3.weight"][k, k, 1, 1] = 1.0
        state["head.weight"][k, k, 0, 0] = gain
    model.load_state_dict(state)
    torch.save(model.state_dict(), path)
    return path


def expected_points(x: float, y: float) -> list[tuple[float, float]]:
    """Where the shift UNet puts the 15 landmarks for one bright crop pixel whose centre is (x, y)."""
    return [(x - dx, y - dy) for dx, dy in SHIFTS]
