"""A ``/v1/digits`` answer as a small composite picture: the normalised 28x28 input the model saw
(scaled up 8x, nearest neighbour, so its pixels stay visible) beside a bar chart of the 10 digits' mean
probabilities over the Monte-Carlo passes, the chosen digit highlighted, and whether the answer is
reliable (or why not) underneath. Drawn with OpenCV: no plotting library at serve time.

The picture has a fixed size (:data:`SIZE`), whatever the photo's. The answer only carries
``probabilities`` when they were asked for, so they are an explicit argument: the caller asks the model
for them when a picture is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from lensgraph.render.canvas import FONT, Style, ascii_text, encode, text_size

__all__ = ["SIZE", "draw_digits", "render_digits"]

FIELD = 28
SCALE = 8
PANEL = FIELD * SCALE  # the input, scaled up: 224 x 224
PAD = 16
TITLE_H = 34
FOOTER_H = 30
CHART_W = 320
AXIS_H = 22  # digit names under the bars
VALUE_H = 18  # the chosen bar's value above it
WIDTH = PAD + PANEL + 2 * PAD + CHART_W + PAD
HEIGHT = PAD + TITLE_H + PANEL + FOOTER_H + PAD
SIZE = (WIDTH, HEIGHT)  # (width, height) of every digits picture

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (215, 215, 215)
BAR = (110, 140, 180)
CHOSEN = (235, 110, 20)
GOOD = (20, 140, 60)
BAD = (200, 30, 30)

_TITLE = Style(thickness=1, radius=1, font_scale=0.7, font_thickness=2)
_TEXT = Style(thickness=1, radius=1, font_scale=0.55, font_thickness=1)
_SMALL = Style(thickness=1, radius=1, font_scale=0.45, font_thickness=1)


def _put(image: np.ndarray, text: str, x: int, y: int, style: Style, colour: tuple[int, int, int]) -> None:
    cv2.putText(image, ascii_text(text), (int(x), int(y)), FONT, style.font_scale, colour, style.font_thickness,
                cv2.LINE_AA)


def _input_image(digit_image: Any) -> np.ndarray:
    """The 28x28 model input: an array, or lensgraph.imaging.digits.DigitInput (``.image``)."""
    array = np.asarray(getattr(digit_image, "image", digit_image))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.shape != (FIELD, FIELD):
        raise ValueError(f"expected the 28x28 digit input, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def _probabilities(answer: dict[str, Any], probabilities: Sequence[float] | None) -> np.ndarray | None:
    values = probabilities if probabilities is not None else answer.get("probabilities")
    if values is None:
        if answer.get("blank") or answer.get("digit") is None:
            return None  # nothing was asked of the model: an empty chart
        raise ValueError("a digits picture needs the 10 probabilities: ask the model for them (probabilities=true)")
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape != (10,):
        raise ValueError(f"expected 10 digit probabilities, got {array.shape[0]}")
    return np.clip(np.nan_to_num(array), 0.0, 1.0)


def _chart(image: np.ndarray, probs: np.ndarray | None, chosen: int | None) -> None:
    x0, y0 = PAD + PANEL + 2 * PAD, PAD + TITLE_H
    base = y0 + PANEL - AXIS_H  # the bars' baseline
    top = y0 + VALUE_H  # where a bar of probability 1 ends
    for level in (0.5, 1.0):
        y = int(round(base - level * (base - top)))
        cv2.line(image, (x0, y), (x0 + CHART_W - 1, y), GRID, 1)
        _put(image, f"{level:.1f}", x0 - 2 * PAD + 1, y + 4, _SMALL, INK)
    cv2.line(image, (x0, base), (x0 + CHART_W - 1, base), INK, 1)
    slot = CHART_W // 10
    for d in range(10):
        left = x0 + d * slot + slot // 6
        right = x0 + (d + 1) * slot - slot // 6 - 1
        colour = CHOSEN if d == chosen else BAR
        if probs is not None:
            height = int(round(float(probs[d]) * (base - top)))
            if height > 0:
                cv2.rectangle(image, (left, base - height), (right, base - 1), colour, thickness=cv2.FILLED)
            if d == chosen:
                text = f"{probs[d]:.2f}"
                tw = text_size(text, _SMALL)[0]
                _put(image, text, (left + right - tw) // 2, base - height - 5, _SMALL, CHOSEN)
        tw = text_size(str(d), _TEXT)[0]
        _put(image, str(d), (left + right - tw) // 2, base + AXIS_H - 5, _TEXT, CHOSEN if d == chosen else INK)


def draw_digits(answer: dict[str, Any], probabilities: Sequence[float] | None, digit_image: Any) -> np.ndarray:
    """The composite picture (RGB, :data:`SIZE`) of a digits answer, its 10 probabilities and the 28x28 input.

    ``probabilities`` None: the answer's own (present when asked for); a blank answer needs none.
    """
    field = _input_image(digit_image)
    probs = _probabilities(answer, probabilities)
    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    panel = cv2.resize(field, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    y0 = PAD + TITLE_H
    image[y0 : y0 + PANEL, PAD : PAD + PANEL] = panel[:, :, None]
    cv2.rectangle(image, (PAD - 1, y0 - 1), (PAD + PANEL, y0 + PANEL), INK, 1)
    digit = answer.get("digit")
    chosen = int(digit) if digit is not None else None
    if answer.get("blank") or chosen is None:
        title = "no digit: the image holds no readable ink"
    else:
        title = f"digit {chosen}   p = {float(answer.get('probability') or 0.0):.3f}"
    _put(image, title, PAD, PAD + TITLE_H - 12, _TITLE, INK)
    _chart(image, probs, chosen)
    if answer.get("reliable"):
        verdict, colour = "reliable", GOOD
    else:
        verdict, colour = f"not reliable: {answer.get('reason') or 'unknown'}", BAD
    _put(image, verdict, PAD, HEIGHT - PAD - 8, _TEXT, colour)
    note = "model input 28x28" + (" (ink inverted)" if answer.get("inverted") else "")
    _put(image, note, PAD + PANEL + 2 * PAD, HEIGHT - PAD - 8, _SMALL, INK)
    return image


def render_digits(answer: dict[str, Any], probabilities: Sequence[float] | None, digit_image: Any,
                  fmt: str = "jpeg") -> bytes:
    return encode(draw_digits(answer, probabilities, digit_image), fmt)
