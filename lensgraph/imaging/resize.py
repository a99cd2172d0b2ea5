"""The resize a model was trained with, named exactly, so serving reproduces it (no training/serving skew).

Two resizes called "bilinear" are not the same transform: PIL's (what torchvision's ``Resize`` runs
on PIL images, and what EfficientNet-Lite's and ResNet's reference pipelines use) widens its filter
when it shrinks, so every source pixel contributes (antialiasing); OpenCV's ``INTER_LINEAR`` samples
four neighbours whatever the scale, so a 4x shrink reads a quarter of the pixels. On a 500x375
photo the served EfficientNet-Lite0 said tench 0.900 with OpenCV and 0.807 with the reference
transform. A model card therefore names ``library``, ``filter`` and ``antialias``
(``preprocessing.before_graph.resize``), and :func:`resize_to` applies exactly that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

LIBRARIES = ("pil", "opencv", "darknet")
PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
               "box": Image.Resampling.BOX}
DARKNET_FILTERS = {"bilinear": None}  # darknet's resize_image: separable bilinear, corner pixels aligned
CV_FILTERS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
              "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}


@dataclass(frozen=True)
class ResizeSpec:
    """One resize transform. PIL always antialiases (its filters scale with the shrink factor);
    OpenCV never does (``area`` is its box average, a different filter)."""

    library: str = "pil"
    filter: str = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise ValueError(f"resize library must be one of {list(LIBRARIES)}, got {self.library!r}")
        filters = {"pil": PIL_FILTERS, "opencv": CV_FILTERS, "darknet": DARKNET_FILTERS}[self.library]
        if self.filter not in filters:
            raise ValueError(f"{self.library} resize filter must be one of {sorted(filters)}, got {self.filter!r}")
        if self.library == "pil" and not self.antialias:
            raise ValueError("PIL's resize always antialiases; use library: opencv for a resize without it")
        if self.library in ("opencv", "darknet") and self.antialias:
            raise ValueError(f"{self.library}'s resize does not antialias; use library: pil (or filter: area) instead")

    @classmethod
    def from_card(cls, value: dict[str, Any] | None, default: "ResizeSpec | None" = None) -> "ResizeSpec":
        """A card's ``resize`` mapping; cards written before it existed were served with OpenCV's."""
        if not value:
            return default or OPENCV_BILINEAR
        return cls(**{k: value[k] for k in ("library", "filter", "antialias") if k in value})

    def describe(self) -> dict[str, Any]:
        return asdict(self)


# torchvision's Resize on PIL images (the reference transform of EfficientNet-Lite's and ResNet's weights).
PIL_BILINEAR = ResizeSpec("pil", "bilinear", True)
# What lensgraph served before cards named their resize; still the default of models imported as ONNX.
OPENCV_BILINEAR = ResizeSpec("opencv", "bilinear", False)
# darknet's own resize_image (src/image.c), what its detectors' letterbox_image uses.
DARKNET_BILINEAR = ResizeSpec("darknet", "bilinear", False)


def resize_to(img: np.ndarray, size: tuple[int, int], spec: ResizeSpec = PIL_BILINEAR) -> np.ndarray:
    """``img`` (uint8 HxW or HxWxC) resized to exactly ``size = (width, height)`` by ``spec``."""
    w, h = size
    if (img.shape[1], img.shape[0]) == (w, h):
        return np.ascontiguousarray(img)
    if spec.library == "darknet":
        return darknet_resize(img, (w, h))
    if spec.library == "pil":
        squeeze = img.ndim == 3 and img.shape[2] == 1
        out = np.asarray(Image.fromarray(img[:, :, 0] if squeeze else img).resize((w, h), PIL_FILTERS[spec.filter]))
        return out[:, :, None] if squeeze else out
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=CV_FILTERS[spec.filter])
    if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
        out = out[:, :, None]
    return out


def darknet_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """darknet's ``resize_image``, vectorised: bilinear with the corner pixels aligned
    (scale ``(in - 1) / (out - 1)``), a horizontal pass then a vertical one, in float32 as darknet computes
    it, including its last row, which takes only the ``(1 - dy)`` share of its source row. Rounded to uint8
    at the end (darknet keeps floats; the difference is at most half a grey level)."""
    w, h = size
    src = img.astype(np.float32)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[:, :, None]
    in_h, in_w = src.shape[:2]
    w_scale = np.float32(in_w - 1) / np.float32(w - 1) if w > 1 else np.float32(0)
    h_scale = np.float32(in_h - 1) / np.float32(h - 1) if h > 1 else np.float32(0)
    sx = np.arange(w, dtype=np.float32) * w_scale
    ix = sx.astype(np.int64)
    dx = (sx - ix.astype(np.float32))[None, :, None]
    nxt = np.minimum(ix + 1, in_w - 1)
    part = (np.float32(1) - dx) * src[:, ix] + dx * src[:, nxt]
    part[:, w - 1] = src[:, in_w - 1]  # darknet: the last column copies the source's last column
    if in_w == 1:
        part[:] = src[:, :1]  # ... and every column does when the source is one pixel wide
    sy = np.arange(h, dtype=np.float32) * h_scale
    iy = sy.astype(np.int64)
    dy = (sy - iy.astype(np.float32))[:, None, None]
    out = (np.float32(1) - dy) * part[iy]
    below = np.minimum(iy + 1, in_h - 1)
    add = dy * part[below]
    if in_h > 1:
        add[h - 1] = 0  # darknet skips the second share on its last row
        out += add
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result[:, :, 0] if squeeze else result
