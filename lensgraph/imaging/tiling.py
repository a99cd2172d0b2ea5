"""Which views of a photo the face detector sees: the whole photo, letterboxed, plus overlapping tiles.

The detector's input is small (320x240 for RFB-320). Squeezing a group photo into it leaves each
face a few pixels tall, and squeezing distorts the aspect ratio too. So the detector sees:

* the whole photo, **letterboxed** (aspect ratio kept, black below or right; coordinates map back
  exactly), which finds the large faces;
* when the photo is larger than one tile, **tiles** of ``tile_width`` photo pixels (the detector's
  aspect ratio) overlapping by ``overlap`` of their size, each letterboxed into the input, and a
  level of tiles twice as large, and so on while a tile does not cover the photo (a pyramid). With
  half-tile overlap every face up to half a tile tall lies whole inside some tile of its level, so
  detections touching a tile's inner edge (cut faces) can be dropped; the merge keeps one box per face.

``max_tiles`` bounds the work: when the tiles at ``tile_width`` would exceed it, the tile grows
(coarser, so faces must be larger to be found) until they fit, and the plan says so (``capped``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MAX_FACE_SHARE = 0.5  # a tile answers for faces up to this share of its height (whole inside one tile)
# About the smallest face RFB-320 finds, in its input's pixels: with 800-px tiles every face >= 48 px
# was found (19 px in the input), benchmarks/faces_recall.py. Used to say what a capped search misses.
MIN_FACE_INPUT = 20
# Faces a tile reports smaller than this in its input are dropped: the search is sized so that wanted
# faces are >= MIN_FACE_INPUT there, and below it the detector mostly saw texture (upscaled photos gave
# 26-40 px "faces" on a suit at 10 px in the tile's input).
MIN_TILE_FACE_INPUT = 16


@dataclass(frozen=True)
class View:
    """A region of the photo (x, y, width, height) and the detector pixels per photo pixel on each axis."""

    x: int
    y: int
    width: int
    height: int
    scale_x: float
    scale_y: float
    whole: bool

    @classmethod
    def of(cls, x: int, y: int, width: int, height: int, input_size: tuple[int, int], whole: bool) -> "View":
        new_w, new_h = fitted_size(width, height, input_size)
        return cls(x, y, width, height, new_w / width, new_h / height, whole)

    def to_photo(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """A box in this view's letterboxed input -> the photo's pixels (exact inverse of :func:`letterbox`)."""
        return (self.x + x1 / self.scale_x, self.y + y1 / self.scale_y,
                self.x + x2 / self.scale_x, self.y + y2 / self.scale_y)

    def cuts(self, box: tuple[float, float, float, float], photo_w: int, photo_h: int, margin: float = 2.0) -> bool:
        """True when ``box`` (photo pixels) touches an edge of this tile that is not an edge of the photo."""
        if self.whole:
            return False
        x1, y1, x2, y2 = box
        return ((self.x > 0 and x1 <= self.x + margin) or (self.y > 0 and y1 <= self.y + margin)
                or (self.x + self.width < photo_w and x2 >= self.x + self.width - margin)
                or (self.y + self.height < photo_h and y2 >= self.y + self.height - margin))


@dataclass(frozen=True)
class TilePlan:
    views: tuple[View, ...]
    tile_width: int | None  # None: the photo fits one view
    capped: bool  # the tiles were made larger than asked to stay within max_tiles


def fitted_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """The size a ``width`` x ``height`` region takes inside ``size`` with its aspect ratio kept."""
    out_w, out_h = size
    scale = min(out_w / width, out_h / height)
    return min(out_w, max(1, round(width * scale))), min(out_h, max(1, round(height * scale)))


def letterbox(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``region`` (HxWx3 uint8) scaled to fit ``size = (width, height)`` with its aspect ratio kept, at
    the top-left of a black canvas. Each axis is scaled by exactly fitted / original size, which
    :meth:`View.to_photo` inverts."""
    out_w, out_h = size
    h, w = region.shape[:2]
    new_w, new_h = fitted_size(w, h, size)
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    interpolation = cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR
    canvas[:new_h, :new_w] = cv2.resize(region, (new_w, new_h), interpolation=interpolation)
    return canvas


STRETCH = 1.15  # a side at most this much longer than a tile gets one stretched tile, not two


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _tiles(width: int, height: int, tile_w: int, tile_h: int, overlap: float) -> list[tuple[int, int, int, int]]:
    # A photo side barely longer than a tile (1024x484 against 640x480) gets one tile spanning it,
    # letterboxed a little smaller, instead of a second row for 4 pixels.
    tile_w = width if tile_w < width <= STRETCH * tile_w else tile_w
    tile_h = height if tile_h < height <= STRETCH * tile_h else tile_h
    stride_x, stride_y = max(1, round(tile_w * (1 - overlap))), max(1, round(tile_h * (1 - overlap)))
    return [(x, y, min(tile_w, width), min(tile_h, height))
            for y in _starts(height, tile_h, stride_y) for x in _starts(width, tile_w, stride_x)]


def _pyramid(width: int, height: int, tile_w: int, tile_h: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles of ``tile_w`` x ``tile_h``, then of twice that, ... while a tile does not cover the photo."""
    out = []
    while width > STRETCH * tile_w or height > STRETCH * tile_h:
        out += _tiles(width, height, tile_w, tile_h, overlap)
        tile_w, tile_h = tile_w * 2, tile_h * 2
    return out


def plan(width: int, height: int, input_size: tuple[int, int], tile_width: int = 640, overlap: float = 0.5,
         max_tiles: int = 64) -> TilePlan:
    """The views for a ``width`` x ``height`` photo: the whole photo, then, when it is larger than one
    tile, a pyramid of tiles (``tile_width``, then twice, four times that, ... while a tile does not
    cover the photo): a tile answers for faces up to half its height, the next level for larger ones,
    the whole view for the largest."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if max_tiles < 0 or tile_width < 1:
        raise ValueError("tile_width must be >= 1 and max_tiles >= 0")
    in_w, in_h = input_size
    whole = View.of(0, 0, width, height, input_size, True)
    tile_w = max(int(tile_width), in_w)
    tile_h = round(tile_w * in_h / in_w)
    if max_tiles == 0 or (width <= STRETCH * tile_w and height <= STRETCH * tile_h):
        return TilePlan((whole,), None, False)
    capped = False
    tiles = _pyramid(width, height, tile_w, tile_h, overlap)
    while len(tiles) > max_tiles:
        capped = True
        tile_w = math.ceil(tile_w * 1.25)
        tile_h = round(tile_w * in_h / in_w)
        tiles = _pyramid(width, height, tile_w, tile_h, overlap)
    if not tiles:
        return TilePlan((whole,), tile_w, capped)
    views = [whole] + [View.of(x, y, w, h, input_size, False) for x, y, w, h in tiles]
    return TilePlan(tuple(views), tile_w, capped)


def view_inputs(pixels: np.ndarray, views: tuple[View, ...], input_size: tuple[int, int]) -> np.ndarray:
    """[V, H, W, 3] uint8: every view of ``pixels`` (HxWx3 RGB) letterboxed into the detector's input."""
    return np.stack([letterbox(pixels[v.y : v.y + v.height, v.x : v.x + v.width], input_size) for v in views])
