"""``/v1/faces`` and ``/v1/landmarks`` answers drawn on the photo: every face's box and score, and its
15 landmarks as small filled circles, one colour per landmark index (the same in every picture), with
their names when asked.

Line widths, radii and text follow the photo's shorter side (canvas.Style); a landmark's circle is also
kept small beside its face, so the points of a small face in a group photo do not merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from lensgraph.postprocess.landmarks import LANDMARK_NAMES
from lensgraph.render.canvas import Style, canvas, encode, label, palette

__all__ = ["BOX_COLOUR", "LANDMARK_COLOURS", "draw_faces", "draw_landmarks", "render_faces", "render_landmarks"]

BOX_COLOUR = (40, 220, 90)  # RGB
LANDMARK_COLOURS: dict[str, tuple[int, int, int]] = {name: palette(i) for i, name in enumerate(LANDMARK_NAMES)}
_OUTLINE = (20, 20, 20)


def _colour(index: int, name: str | None) -> tuple[int, int, int]:
    return LANDMARK_COLOURS.get(name or "", palette(index))


def _points(image: np.ndarray, marks: Sequence[dict[str, Any]], style: Style, radius: int, names: bool) -> None:
    name_style = style.with_font(style.font_scale * 0.6)
    for i, mark in enumerate(marks):
        x, y = float(mark["x"]), float(mark["y"])
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre = (int(round(x)), int(round(y)))
        colour = _colour(i, mark.get("name"))
        if radius >= 3:  # a dark rim keeps light colours visible on light skin
            cv2.circle(image, centre, radius + 1, _OUTLINE, thickness=cv2.FILLED, lineType=cv2.LINE_AA)
        cv2.circle(image, centre, radius, colour, thickness=cv2.FILLED, lineType=cv2.LINE_AA)
        if names and mark.get("name"):
            label(image, str(mark["name"]), centre[0] + radius + 1, centre[1] - radius, name_style, (0, 0, 0),
                  colour)


def draw_faces(pixels: np.ndarray, answer: dict[str, Any], names: bool = False) -> np.ndarray:
    """The photo (RGB copy) with each face of a ``/v1/faces`` answer: box, score and landmarks."""
    image = canvas(pixels)
    style = Style.for_shape(*image.shape[:2])
    for face in answer.get("faces") or []:
        box = face["box"]
        x1, y1, x2, y2 = (int(round(float(box[k]))) for k in ("x1", "y1", "x2", "y2"))
        cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOUR, style.thickness, cv2.LINE_AA)
        side = max(1, min(x2 - x1, y2 - y1))
        radius = max(1, min(style.radius, round(side / 40)))
        _points(image, face.get("landmarks") or [], style, radius, names)
        label(image, f"{float(face['score']):.2f}", x1, y1 - style.thickness, style, BOX_COLOUR)
    return image


def draw_landmarks(pixels: np.ndarray, answer: dict[str, Any], names: bool = False) -> np.ndarray:
    """A face crop (RGB copy) with the 15 points of a ``/v1/landmarks`` answer."""
    image = canvas(pixels)
    style = Style.for_shape(*image.shape[:2])
    _points(image, answer.get("landmarks") or [], style, style.radius, names)
    return image


def render_faces(pixels: np.ndarray, answer: dict[str, Any], fmt: str = "jpeg", names: bool = False) -> bytes:
    return encode(draw_faces(pixels, answer, names), fmt)


def render_landmarks(pixels: np.ndarray, answer: dict[str, Any], fmt: str = "jpeg", names: bool = False) -> bytes:
    return encode(draw_landmarks(pixels, answer, names), fmt)
