"""Drawing helpers shared by the route pictures: a copy of the photo to draw on, sizes scaled to it,
colours, labels on a background, and encoding to JPEG or PNG.

Everything is OpenCV primitives on an RGB ``uint8`` canvas (no per-pixel Python loops); colours are
RGB tuples, and the canvas is converted to BGR only when it is encoded.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FONT", "FORMATS", "Style", "ascii_text", "canvas", "contrast", "encode", "fit_font", "label",
           "normalise_format", "palette", "shade", "text_size"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}  # fmt -> media type
_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png"}
JPEG_QUALITY = 90
PNG_COMPRESSION = 3  # zlib level: most of the size gain of 9 at a fraction of its time
MIN_FONT_SCALE = 0.3  # smaller Hershey text is unreadable


@dataclass(frozen=True)
class Style:
    """Line width, circle radius and font scale for a picture, scaled to its shorter side."""

    thickness: int
    radius: int
    font_scale: float
    font_thickness: int

    @classmethod
    def for_shape(cls, height: int, width: int) -> "Style":
        side = max(1, min(int(height), int(width)))
        font_scale = max(MIN_FONT_SCALE, side / 900.0)
        return cls(thickness=max(1, round(side / 320)), radius=max(1, round(side / 160)), font_scale=font_scale,
                   font_thickness=max(1, round(font_scale * 1.6)))

    def with_font(self, font_scale: float) -> "Style":
        font_scale = max(MIN_FONT_SCALE, font_scale)
        return Style(self.thickness, self.radius, font_scale, max(1, round(font_scale * 1.6)))


def canvas(pixels: np.ndarray) -> np.ndarray:
    """A contiguous RGB copy of a decoded photo (HxWx3 RGB, HxW or HxWx1 gray, uint8) to draw on;
    the caller's array is never changed."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGB)
    if array.ndim == 3 and array.shape[2] == 3:
        return np.array(array, dtype=np.uint8, order="C", copy=True)
    raise ValueError(f"expected HxWx3 RGB or HxW gray pixels, got shape {array.shape}")


def normalise_format(fmt: str) -> str:
    """``jpeg``/``jpg``/``png`` (or their media types) -> ``jpeg`` or ``png``; ValueError otherwise."""
    key = str(fmt).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown image format {fmt!r}; use one of {sorted(FORMATS)}")
    return _ALIASES[key]


def encode(rgb: np.ndarray, fmt: str = "jpeg") -> bytes:
    """An RGB canvas as JPEG (quality 90) or PNG bytes."""
    fmt = normalise_format(fmt)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} picture as {fmt}")
    return data.tobytes()


def palette(index: int) -> tuple[int, int, int]:
    """A bright RGB colour for an index (landmark, class): hues a golden-ratio step apart, so neighbouring
    indices get clearly different colours and the same index always the same one."""
    hue = (int(index) * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def contrast(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour`` (BT.601 luma)."""
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def shade(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle in place (``alpha`` of black over it), clipped to the image: a backdrop that
    keeps white text readable on any photo while the photo still shows through."""
    h, w = image.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = cv2.convertScaleAbs(image[y0:y1, x0:x1], alpha=1.0 - alpha)


def ascii_text(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only: anything else becomes ``?``."""
    return str(text).encode("ascii", "replace").decode("ascii")


def text_size(text: str, style: Style) -> tuple[int, int, int]:
    """(width, height above the baseline, depth below it) of ``text`` in ``style``'s font."""
    (w, h), baseline = cv2.getTextSize(ascii_text(text), FONT, style.font_scale, style.font_thickness)
    return w, h, baseline


def fit_font(texts: list[str], style: Style, max_width: int) -> Style:
    """``style`` with its font shrunk (not below the readable minimum) until the widest text fits."""
    widest = max((text_size(t, style)[0] for t in texts), default=0)
    if widest <= max_width or widest == 0:
        return style
    return style.with_font(style.font_scale * max_width / widest)


def label(image: np.ndarray, text: str, x: int, y: int, style: Style, background: tuple[int, int, int],
          foreground: tuple[int, int, int] | None = None, above: bool = True) -> tuple[int, int, int, int]:
    """``text`` on a filled box whose bottom-left corner is (x, y) (``above``) or whose top-left corner is
    (x, y), moved inside the image when it would leave it. Returns the box (x0, y0, x1, y1)."""
    text = ascii_text(text)
    tw, th, base = text_size(text, style)
    pad = max(1, style.font_thickness)
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    h, w = image.shape[:2]
    x0 = int(min(max(0, x), max(0, w - bw)))
    y0 = int(y - bh if above else y)
    if above and y0 < 0:
        y0 = int(y)  # no room above: just below the anchor instead
    y0 = int(min(max(0, y0), max(0, h - bh)))
    cv2.rectangle(image, (x0, y0), (x0 + bw - 1, y0 + bh - 1), background, thickness=cv2.FILLED)
    cv2.putText(image, text, (x0 + pad, y0 + pad + th), FONT, style.font_scale,
                foreground or contrast(background), style.font_thickness, cv2.LINE_AA)
    return x0, y0, x0 + bw, y0 + bh
