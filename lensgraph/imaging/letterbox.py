"""Letterboxing for the object detector: the photo scaled to fit, centred on grey, and the exact way back.

Darknet's detector sees each photo with its aspect ratio kept, centred on a canvas filled with 0.5
(``letterbox_image``); in uint8 that is 127. The photo is scaled on each axis by exactly
``fitted / original`` size, the fitted size computed as darknet does (integer division), so
:meth:`LetterboxMapping.to_image` inverts the placement exactly, up to the resampling itself. The
resampling is named (lensgraph.imaging.resize): the darknet detector's card names darknet's own
``resize_image`` (``library: darknet``), which this reproduces to half a grey level (tests/unit/test_darknet.py
compares it with libdarknet's ``letterbox_image``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lensgraph.imaging.resize import DARKNET_BILINEAR, ResizeSpec, resize_to

__all__ = ["DARKNET_FILL", "LetterboxMapping", "letterbox"]

DARKNET_FILL = 127  # darknet fills with 0.5; 127/255 is as close as uint8 gets (with 128)


@dataclass(frozen=True)
class LetterboxMapping:
    """Where a photo sits in the network input: ``input = offset + image * scale`` on each axis."""

    image_width: int
    image_height: int
    input_width: int
    input_height: int
    offset_x: int
    offset_y: int
    scale_x: float
    scale_y: float

    def to_image(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """[N, 4] ``x1, y1, x2, y2`` boxes in network-input pixels -> image pixels (clipped to the image)."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, [0, 2]] = (b[:, [0, 2]] - self.offset_x) / self.scale_x
        out[:, [1, 3]] = (b[:, [1, 3]] - self.offset_y) / self.scale_y
        if clip:
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, float(self.image_width))
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, float(self.image_height))
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_image` (unclipped): image pixels -> network-input pixels."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, [0, 2]] = b[:, [0, 2]] * self.scale_x + self.offset_x
        out[:, [1, 3]] = b[:, [1, 3]] * self.scale_y + self.offset_y
        return out


def fitted(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """darknet's ``letterbox_image`` size: the limiting side fills the input, the other is truncated."""
    out_w, out_h = size
    if out_w / width < out_h / height:
        return out_w, max(1, (height * out_w) // width)
    return max(1, (width * out_h) // height), out_h


def letterbox(pixels: np.ndarray, size: tuple[int, int], fill: int = DARKNET_FILL,
              resize: ResizeSpec = DARKNET_BILINEAR) -> tuple[np.ndarray, LetterboxMapping]:
    """``pixels`` (HxWx3 uint8) fitted into ``size = (width, height)``, centred on ``fill``, and its mapping."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"letterbox needs an HxWx3 uint8 image, got {pixels.dtype} {pixels.shape}")
    out_w, out_h = size
    h, w = pixels.shape[:2]
    new_w, new_h = fitted(w, h, size)
    off_x, off_y = (out_w - new_w) // 2, (out_h - new_h) // 2  # darknet: (w - new_w) / 2 in ints
    canvas = np.full((out_h, out_w, 3), fill, np.uint8)
    canvas[off_y : off_y + new_h, off_x : off_x + new_w] = resize_to(pixels, (new_w, new_h), resize)
    return canvas, LetterboxMapping(w, h, out_w, out_h, off_x, off_y, new_w / w, new_h / h)
