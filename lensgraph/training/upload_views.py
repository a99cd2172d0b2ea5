"""MNIST digits as they arrive in uploads: re-encoded, resized, either polarity, then prepared.

Served digits never reach the network as MNIST arrays: they are PNG, JPEG or WebP files of any
size that ``prepare_digit`` crops and refits into 28x28. JPEG's halo and the up- and down-scaling
change the strokes a little, enough that a model trained and calibrated on the arrays alone
marked 10-20% fewer upload digits reliable than MNIST arrays (docs/digits/report.md, "Test digits
as users send them"). Training sees a share of its digits through this round trip, and the
calibration's held-out digits and the distance rule's bank are a mix of both views, so the
thresholds hold for what users send. Every choice comes from a seeded Generator.
"""

from __future__ import annotations

import io

import numpy as np

FORMATS = ("PNG", "JPEG", "WEBP")
MIN_SIDE, MAX_SIDE = 28, 320
MIN_QUALITY, MAX_QUALITY = 75, 95


def upload_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uint8 28x28 MNIST digit -> a random upload of it -> ``prepare_array``'s 28x28 input."""
    from PIL import Image

    from lensgraph.imaging.decode import decode_image
    from lensgraph.imaging.digits import prepare_digit

    side = int(round(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE)))))
    fmt = FORMATS[int(rng.integers(len(FORMATS)))]
    pixels = 255 - image if rng.random() < 0.5 else image
    picture = Image.fromarray(pixels)
    if side != picture.width:
        picture = picture.resize((side, side), Image.BILINEAR if rng.random() < 0.5 else Image.BICUBIC)
    buffer = io.BytesIO()
    options = {} if fmt == "PNG" else {"quality": int(rng.integers(MIN_QUALITY, MAX_QUALITY + 1))}
    picture.save(buffer, fmt, **options)
    prepared = prepare_digit(decode_image(buffer.getvalue()))
    return prepared.image if not prepared.blank else image


def upload_views(images: np.ndarray, seed: int | list[int]) -> np.ndarray:
    """:func:`upload_view` of every image of uint8 [N, 28, 28], from one seeded Generator."""
    rng = np.random.default_rng(seed)
    return np.stack([upload_view(image, rng) for image in images]) if len(images) else images.copy()


def mixed_views(images: np.ndarray, seed: int | list[int], share: float = 0.5) -> np.ndarray:
    """Served-view digits with a seeded ``share`` replaced by their upload views: what calibration sees."""
    from lensgraph.training.calibrate_digits import served_view

    out = served_view(images)
    chosen = np.flatnonzero(np.random.default_rng(seed).random(len(images)) < share)
    if len(chosen):
        out[chosen] = upload_views(images[chosen], [*np.atleast_1d(seed).tolist(), 1])
    return out
