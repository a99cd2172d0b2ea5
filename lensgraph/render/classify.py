"""A ``/v1/classify`` answer drawn on the photo: the top-k labels and confidences on a darkened banner
across the top (white text on a shaded band reads on any background), each with a bar as long as its
confidence."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from lensgraph.render.canvas import FONT, Style, ascii_text, canvas, encode, fit_font, shade, text_size

__all__ = ["BAR_COLOUR", "draw_classify", "render_classify"]

BAR_COLOUR = (255, 170, 40)  # RGB
TEXT_COLOUR = (255, 255, 255)
MAX_BANNER_SHARE = 0.6  # of the photo's height; more lines than fit are left out


def _lines(answer: dict[str, Any]) -> list[tuple[str, float]]:
    out = []
    for rank, p in enumerate(answer.get("predictions") or [], 1):
        confidence = float(p["confidence"])
        out.append((ascii_text(f"{rank}. {p['label']}  {100 * confidence:.1f}%"), confidence))
    return out


def draw_classify(pixels: np.ndarray, answer: dict[str, Any]) -> np.ndarray:
    """The photo (RGB copy) with the answer's predictions on a banner over its top."""
    image = canvas(pixels)
    h, w = image.shape[:2]
    lines = _lines(answer)
    if not lines:
        return image
    style = Style.for_shape(h, w)
    pad = max(2, round(style.font_scale * 8))
    style = fit_font([t for t, _ in lines], style, w - 2 * pad)
    _, th, base = text_size("Hg", style)
    bar = max(1, round(th / 4))
    step = th + base + bar + pad
    fits = max(1, int((h * MAX_BANNER_SHARE - pad) // step))
    lines = lines[:fits]
    shade(image, 0, 0, w, pad + step * len(lines), alpha=0.6)
    for i, (text, confidence) in enumerate(lines):
        top = pad + i * step
        cv2.putText(image, text, (pad, top + th), FONT, style.font_scale, TEXT_COLOUR, style.font_thickness,
                    cv2.LINE_AA)
        length = int(round(min(max(confidence, 0.0), 1.0) * (w - 2 * pad)))
        if length > 0:
            y = top + th + base
            cv2.rectangle(image, (pad, y), (pad + length - 1, y + bar - 1), BAR_COLOUR, thickness=cv2.FILLED)
    return image


def render_classify(pixels: np.ndarray, answer: dict[str, Any], fmt: str = "jpeg") -> bytes:
    return encode(draw_classify(pixels, answer), fmt)
