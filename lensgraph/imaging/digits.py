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
CLEAR_INK = 32  # ink level (0..255) that is surely a stroke, not a compression halo
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


def _background_is_light(gray: np.ndarray) -> bool:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > float(np.median(gray[1:-1, 1:-1])) if gray.shape[0] > 2 and gray.shape[1] > 2 \
        else float(np.median(border)) > 127


def prepare_digit(image: DecodedImage) -> DigitInput:
    """A decoded request image -> the 28x28 MNIST-style input (or blank)."""
    return prepare_array(image.pixels, image.alpha)


def prepare_array(pixels: np.ndarray, alpha: np.ndarray | None = None) -> DigitInput:
    """HxW grayscale or HxWx3 RGB uint8 (optionally with its HxW alpha) -> a 28x28 digit input.

    Steps: polarity (ink = the side that is not the background), paper level and noise removed
    (the ink is rescaled so paper is 0 and solid strokes are 255, anti-aliased edges kept), only
    the ink connected to real strokes kept, cropped to that ink, resized so its longer side is 20
    (aspect ratio kept), and pasted into 28x28 with its centre of mass on pixel (14, 14) by an
    integer shift, as MNIST itself was made (an MNIST image comes back unchanged up to rounding).
    """
    gray = _gray(pixels, alpha)
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        return _blank(False)
    inverted = _background_is_light(gray) or float(np.median(gray)) > 127
    ink = 255 - gray if inverted else gray
    level = _ink_level(ink)
    if level is None:
        return _blank(inverted)
    level, strokes = level
    ys, xs = np.nonzero(level)
    crop = level[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (new_w, new_h), interpolation=interpolation)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    moments = cv2.moments(small)
    if moments["m00"] > 0:
        cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    else:
        cx, cy = (new_w - 1) / 2, (new_h - 1) / 2
    field = _paste(small, int(round(FIELD / 2 - cx)), int(round(FIELD / 2 - cy)))
    if not field.any():
        return _blank(inverted)
    fraction = float(np.count_nonzero(strokes)) / strokes.size
    return DigitInput(field, False, inverted, fraction)


def _gray(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    gray = pixels if pixels.ndim == 2 else to_gray(pixels)
    if alpha is not None and int(alpha.max()) - int(alpha.min()) >= MIN_CONTRAST:
        # Strokes drawn on a transparent canvas: the alpha channel is the ink.
        colour_spread = int(np.percentile(gray, 99)) - int(np.percentile(gray, 1))
        if colour_spread < MIN_CONTRAST:
            return 255 - alpha
    return gray


def _blank(inverted: bool) -> DigitInput:
    return DigitInput(np.zeros((FIELD, FIELD), np.uint8), True, inverted, 0.0)


def _ink_level(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Ink rescaled to 0 (paper) .. 255 (solid stroke), float32, plus the Otsu stroke mask.

    The paper level and its noise are measured on the pixels Otsu puts on the paper side; what
    lies within three robust standard deviations of the paper is paper. Faint pixels survive
    only where they touch a stroke (anti-aliasing), so specks of paper texture do not move the
    crop. None when no ink stands out from the paper.
    """
    _, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strokes = mask > 0
    if not strokes.any() or strokes.all():
        return None
    paper_pixels = ink[~strokes].astype(np.float32)
    paper = float(np.median(paper_pixels))
    noise = 1.4826 * float(np.median(np.abs(paper_pixels - paper)))
    floor = paper + 3.0 * noise
    solid = float(np.percentile(ink[strokes], 95))
    if solid - floor < MIN_CONTRAST:
        return None
    level = np.clip((ink.astype(np.float32) - floor) * (255.0 / (solid - floor)), 0.0, 255.0)
    support = (level > 0).astype(np.uint8)
    count, labels = cv2.connectedComponents(support, connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[strokes & (support > 0)])] = True
    keep[0] = False
    level = np.where(keep[labels], level, 0.0).astype(np.float32)
    # Faint ink counts only within a pixel of clear ink: anti-aliased edges stay, while the faint halo
    # JPEG and WebP leave around strokes (which touches them, so survives the step above) no longer
    # widens the crop and shrinks the digit (a JPEG of an MNIST digit came out a fifth smaller).
    clear = cv2.dilate((level >= CLEAR_INK).astype(np.uint8), np.ones((3, 3), np.uint8))
    level = np.where(clear > 0, level, 0.0).astype(np.float32)
    if not level.any():
        return None
    return level, strokes


def _paste(small: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``small`` into a black 28x28 field with its top-left corner at (x0, y0), clipped."""
    field = np.zeros((FIELD, FIELD), np.uint8)
    h, w = small.shape
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(FIELD, x0 + w), min(FIELD, y0 + h)
    if dx1 > dx0 and dy1 > dy0:
        field[dy0:dy1, dx0:dx1] = small[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    return field
