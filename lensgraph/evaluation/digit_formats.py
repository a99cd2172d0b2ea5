"""MNIST test digits as users send them: each file format, polarity and size, through decoding.

Issue 12's target is about uploads, not about MNIST arrays: >= 95% of test digits marked reliable
(with >= 99.7% accuracy among them) in PNG, JPEG and WebP, light or dark ink, 28 to 300 pixels.
Each case encodes the same seeded sample of test digits with Pillow, decodes it with the served
decoder (``decode_image``) and prepares it with ``prepare_digit``, so JPEG's ringing, WebP's
smoothing and the up-scaling are all in the measurement.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

FORMATS = (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 90}))
SIZES = (28, 100, 300)
POLARITIES = ("light on dark", "dark on light")


def encode(image: np.ndarray, size: int, dark_on_light: bool, fmt: str, options: dict) -> bytes:
    """A uint8 28x28 MNIST digit as an upload: resized (bilinear), optionally inverted, encoded."""
    from PIL import Image

    pixels = 255 - image if dark_on_light else image
    picture = Image.fromarray(pixels)
    if size != picture.width:
        picture = picture.resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def evaluate_formats(images: np.ndarray, labels: np.ndarray,
                     judge: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """One row per (format, polarity, size): share reliable, accuracy overall and among reliable.

    ``judge`` maps prepared uint8 [N, 28, 28] images to (predicted digits, reliable flags) with the
    served rule; blank images count as neither right nor reliable.
    """
    from lensgraph.imaging.decode import decode_image
    from lensgraph.imaging.digits import prepare_digit

    rows = []
    for fmt, options in FORMATS:
        for polarity in POLARITIES:
            for size in SIZES:
                prepared = [prepare_digit(decode_image(encode(image, size, polarity != POLARITIES[0], fmt, options)))
                            for image in images]
                blank = np.array([p.blank for p in prepared])
                digits, reliable = judge(np.stack([p.image for p in prepared]))
                right = (digits == labels) & ~blank
                reliable = reliable & ~blank
                rows.append({
                    "format": fmt, "polarity": polarity, "size": size, "images": int(len(images)),
                    "blank": int(blank.sum()),
                    "accuracy": float(right.mean()),
                    "reliable": float(reliable.mean()),
                    "accuracy_reliable": float(right[reliable].mean()) if reliable.any() else None,
                })
    return rows
