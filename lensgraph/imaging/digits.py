"""Any image of a digit -> a 28x28 MNIST-style input.

MNIST digits are light ink on a dark background, cropped to the ink, scaled to fit 20x20 with the
aspect ratio kept, and centred by their centre of mass in a 28x28 field. Photos and scans of digits
are usually dark ink on light paper, of any size and format: this module detects the polarity and
repeats MNIST's own normalisation, so the network sees what it was trained on. An image with no
ink (blank, flat or noise-free) is reported as blank instead of being forced into a digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lensgraph.imaging.decode import DecodedImage, to_gray

FIELD = 28
BOX = 20
MIN_CONTRAST = 32  # grey levels between ink and paper below which there is no readable ink


@dataclass(frozen=True)
class DigitInput:
    image: np.ndarray  # 28x28 uint8, light ink on black
    blank: bool
    inverted: bool  # True when the source was dark ink on light paper
    ink_fraction: float

    def to_dict(self) -> dict:
        return {"image": self.image, "blank": self.blank, "inverted": self.inverted, "ink_fraction": self.ink_fraction}


def _gray_with_alpha(image: DecodedImage) -> np.ndarray:
    gray = to_gray(image.pixels)
    if image.alpha is not None and int(image.alpha.max()) - int(image.alpha.min()) >= MIN_CONTRAST:
        # Strokes drawn on a transparent canvas: the alpha channel is the ink.
        colour_spread = int(np.percentile(gray, 99)) - int(np.percentile(gray, 1))
        if colour_spread < MIN_CONTRAST:
            return 255 - image.alpha
    return gray


def _background_is_light(gray: np.ndarray) -> bool:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > float(np.median(gray[1:-1, 1:-1])) if gray.shape[0] > 2 and gray.shape[1] > 2 \
        else float(np.median(border)) > 127


def prepare_digit(image: DecodedImage) -> DigitInput:
    gray = _gray_with_alpha(image)
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        return DigitInput(np.zeros((FIELD, FIELD), np.uint8), True, False, 0.0)
    inverted = _background_is_light(gray) or float(np.median(gray)) > 127
    ink = 255 - gray if inverted else gray.copy()
    # Paper is never perfectly flat: remove its level so only the strokes remain.
    threshold, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = np.where(mask > 0, ink, 0).astype(np.uint8)
    fraction = float(np.count_nonzero(mask)) / mask.size
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return DigitInput(np.zeros((FIELD, FIELD), np.uint8), True, inverted, 0.0)
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (new_w, new_h), interpolation=interpolation)
    field = np.zeros((FIELD, FIELD), np.float32)
    moments = cv2.moments(small)
    if moments["m00"] > 0:
        cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    else:
        cx, cy = new_w / 2, new_h / 2
    shift = np.float32([[1, 0, FIELD / 2 - cx], [0, 1, FIELD / 2 - cy]])
    field = cv2.warpAffine(small, shift, (FIELD, FIELD), flags=cv2.INTER_LINEAR, borderValue=0)
    return DigitInput(field.astype(np.uint8), False, inverted, fraction)
