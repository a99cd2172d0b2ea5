"""A ``/v1/detect`` answer drawn on the photo: each box in its class's colour, with the class name and
score on a label of that colour."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from lensgraph.render.canvas import Style, canvas, encode, label, palette

__all__ = ["draw_detect", "render_detect"]


def draw_detect(pixels: np.ndarray, answer: dict[str, Any]) -> np.ndarray:
    """The photo (RGB copy) with every detection's box, class name and score."""
    image = canvas(pixels)
    style = Style.for_shape(*image.shape[:2])
    found = answer.get("detections") or []
    # Worst first, so the best boxes and labels end on top where they overlap.
    for d in sorted(found, key=lambda d: float(d.get("score", 0.0))):
        x1, y1, x2, y2 = (int(round(float(v))) for v in d["box"])
        colour = palette(int(d.get("class_id", 0)))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, style.thickness, cv2.LINE_AA)
        name = d.get("label") or f"class {d.get('class_id')}"
        label(image, f"{name} {float(d['score']):.2f}", x1, y1 - style.thickness, style, colour)
    return image


def render_detect(pixels: np.ndarray, answer: dict[str, Any], fmt: str = "jpeg") -> bytes:
    return encode(draw_detect(pixels, answer), fmt)
