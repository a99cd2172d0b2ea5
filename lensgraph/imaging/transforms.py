"""Geometry on ``uint8`` images (numpy/OpenCV), shared by every model's preprocessing.

Each model card names one of these; keeping them here, small and tested, means the resize and
crop conventions (rounding, centring, padding) are defined once and not re-invented per model.
All functions take and return ``uint8`` arrays (HxW or HxWxC, RGB when colour).

Coordinate convention for crops: continuous pixel coordinates, where pixel ``i`` covers
``[i, i + 1)``; a crop of side ``s`` at ``(x0, y0)`` maps crop coordinate ``p`` (in an
``out_size`` crop) to image coordinate ``x0 + p * s / out_size``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.decode import to_gray
from lensgraph.imaging.resize import PIL_BILINEAR, ResizeSpec, resize_to

__all__ = [
    "CropBox",
    "center_crop",
    "classifier_standard",
    "as_rgb",
    "detector_input",
    "resize_exact",
    "resize_shorter_side",
    "square_face_crop",
    "zoom_crop_pad",
]

Size = int | tuple[int, int]


def resize_shorter_side(img: np.ndarray, size: int, resize: ResizeSpec = PIL_BILINEAR) -> np.ndarray:
    """Scale so the shorter side is ``size`` with the ``resize`` transform; the longer side is
    truncated like torchvision's ``Resize(size)``."""
    _check_image(img)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    h, w = img.shape[:2]
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return resize_to(img, (new_w, new_h), resize)


def center_crop(img: np.ndarray, size: Size) -> np.ndarray:
    """Centre crop to ``size`` (int or ``(w, h)``), offset ``round((W - w) / 2)``.

    A side smaller than the crop is padded with zeros (as torchvision does), so the result
    always has the requested shape.
    """
    _check_image(img)
    out_w, out_h = _pair(size)
    img = _pad_to_at_least(img, out_w, out_h)
    h, w = img.shape[:2]
    top = int(round((h - out_h) / 2.0))
    left = int(round((w - out_w) / 2.0))
    return np.ascontiguousarray(img[top : top + out_h, left : left + out_w])


def classifier_standard(img: np.ndarray, resize_shorter: int = 256, crop: int = 224,
                        resize: ResizeSpec = PIL_BILINEAR) -> np.ndarray:
    """The ImageNet evaluation transform: shorter side to ``resize_shorter``, centre ``crop``
    (torchvision's ``Resize`` + ``CenterCrop`` on PIL images with the default ``resize``)."""
    return center_crop(resize_shorter_side(img, resize_shorter, resize), crop)


def resize_exact(
    img: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Resize to exactly ``size = (width, height)``, ignoring the aspect ratio."""
    _check_image(img)
    w, h = _pair(size)
    if (img.shape[1], img.shape[0]) == (w, h):
        return np.ascontiguousarray(img)
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interpolation)
    if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
        out = out[:, :, None]
    return out


def detector_input(img: np.ndarray, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """The face detector's input: RGB plainly resized to ``size = (width, height)``."""
    return resize_exact(_as_rgb(img), size)


def zoom_crop_pad(
    img: np.ndarray,
    out_size: int = 224,
    zoom: float = 1.5,
    crop: int = 100,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Zoom in by ``zoom``, take a random ``crop`` x ``crop`` window, centre it on black.

    The window position is uniform over the zoomed image; in a dimension where the zoomed image
    is smaller than ``crop`` all of it is taken. The result is ``out_size`` x ``out_size`` x 3
    (grayscale input is repeated to 3 channels). Pass a seeded ``rng`` for reproducible output;
    ``None`` draws from fresh OS entropy.
    """
    _check_image(img)
    if zoom <= 0 or crop < 1 or out_size < crop:
        raise ValueError(f"need zoom > 0 and 1 <= crop <= out_size, got {zoom}, {crop}, {out_size}")
    rng = np.random.default_rng() if rng is None else rng
    rgb = _as_rgb(img)
    h, w = rgb.shape[:2]
    zoomed = resize_exact(rgb, (max(1, round(w * zoom)), max(1, round(h * zoom))))
    zh, zw = zoomed.shape[:2]
    top = int(rng.integers(0, zh - crop + 1)) if zh > crop else 0
    left = int(rng.integers(0, zw - crop + 1)) if zw > crop else 0
    window = zoomed[top : top + crop, left : left + crop]
    canvas = np.zeros((out_size, out_size, 3), dtype=np.uint8)
    wh, ww = window.shape[:2]
    y0, x0 = (out_size - wh) // 2, (out_size - ww) // 2
    canvas[y0 : y0 + wh, x0 : x0 + ww] = window
    return canvas


@dataclass(frozen=True)
class CropBox:
    """Where a square crop came from: top-left ``(x0, y0)`` and ``side``, in image pixels."""

    x0: float
    y0: float
    side: float

    def to_image(self, points: np.ndarray, out_size: int = 96) -> np.ndarray:
        """Map ``[..., 2]`` (x, y) points in crop pixels back to original image pixels."""
        pts = np.asarray(points, dtype=np.float64)
        k = self.side / out_size
        return pts * k + np.array([self.x0, self.y0])

    def to_crop(self, points: np.ndarray, out_size: int = 96) -> np.ndarray:
        """Inverse of :meth:`to_image`: image pixels -> crop pixels."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts - np.array([self.x0, self.y0])) * (out_size / self.side)


def square_face_crop(
    img: np.ndarray,
    box_xyxy: Sequence[float] | np.ndarray,
    out_size: int = 96,
    scale: float = 1.0,
) -> tuple[np.ndarray, CropBox]:
    """Square grayscale crop around a face box, for the landmark regressor.

    The square has side ``max(w, h) * scale`` and the box's centre; parts outside the image are
    zeros, so boxes touching or crossing the border work. Returns the ``out_size`` x
    ``out_size`` ``uint8`` crop and the :class:`CropBox` to map points back. When shrinking,
    the source is Gaussian-blurred first (sigma = (k - 1) / 2 for shrink factor k) so the
    bilinear warp does not alias.
    """
    _check_image(img)
    if out_size < 1 or not (scale > 0 and math.isfinite(scale)):
        raise InvalidRequest(f"out_size must be >= 1 and scale > 0, got {out_size}, {scale}")
    x1, y1, x2, y2 = _validate_box(box_xyxy)
    side = max(x2 - x1, y2 - y1) * scale
    box = CropBox(x0=(x1 + x2 - side) / 2.0, y0=(y1 + y2 - side) / 2.0, side=side)
    k = side / out_size
    sigma = (k - 1.0) / 2.0 if k > 1.0 else 0.0
    roi, (ox, oy) = _source_region(img, box, margin=int(math.ceil(3 * sigma)) + 2)
    if roi.size == 0:
        return np.zeros((out_size, out_size), dtype=np.uint8), box
    gray = np.ascontiguousarray(to_gray(roi) if roi.ndim == 3 else roi)
    if sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma)
    # Destination pixel centre u + 0.5 <-> image coordinate x0 + (u + 0.5) * k (pixel centres).
    matrix = np.array(
        [[k, 0.0, box.x0 - ox + 0.5 * k - 0.5], [0.0, k, box.y0 - oy + 0.5 * k - 0.5]],
        dtype=np.float64,
    )
    crop = cv2.warpAffine(
        gray,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return crop, box


# --- helpers -----------------------------------------------------------------------------------


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError("expected a uint8 HxW or HxWxC image array")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"empty image of shape {img.shape}")


def _pair(size: Size) -> tuple[int, int]:
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(w) < 1 or int(h) < 1:
        raise ValueError(f"sizes must be >= 1, got {size}")
    return int(w), int(h)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 3:
        return img
    raise ValueError(f"expected 1 or 3 channels, got shape {img.shape}")


def _pad_to_at_least(img: np.ndarray, w: int, h: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    if ih >= h and iw >= w:
        return img
    pad_h, pad_w = max(0, h - ih), max(0, w - iw)
    pads = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)]
    pads += [(0, 0)] * (img.ndim - 2)
    return np.pad(img, pads)


def _validate_box(box_xyxy: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    values = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise InvalidRequest("A face box must be four finite numbers x1, y1, x2, y2.")
    x1, y1, x2, y2 = (float(v) for v in values)
    if x2 <= x1 or y2 <= y1:
        raise InvalidRequest(f"A face box needs x2 > x1 and y2 > y1, got {[x1, y1, x2, y2]}.")
    return x1, y1, x2, y2


def _source_region(
    img: np.ndarray, box: CropBox, margin: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``img`` the crop reads (plus a margin), as a view, and its top-left corner."""
    h, w = img.shape[:2]
    left = min(w, max(0, int(math.floor(box.x0)) - margin))
    top = min(h, max(0, int(math.floor(box.y0)) - margin))
    right = max(left, min(w, int(math.ceil(box.x0 + box.side)) + margin))
    bottom = max(top, min(h, int(math.ceil(box.y0 + box.side)) + margin))
    return img[top:bottom, left:right], (left, top)


def as_rgb(img: np.ndarray) -> np.ndarray:
    """HxW grayscale or HxWx3 RGB uint8 -> HxWx3 RGB (the face detector's views need three channels)."""
    return _as_rgb(img)
