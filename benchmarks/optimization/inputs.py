"""Real inputs for timing, calibration and accuracy: the assets' photos and MNIST.

Everything goes through lensgraph's own decoder and transforms, as served requests do.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from lensgraph.evaluation.ood import PHOTO_GLOBS
from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.transforms import classifier_standard, detector_input, resize_exact

SAMPLE_PHOTOS = ("imagenet/n01440764_tench.JPEG", "imagenet/n01667114_mud_turtle.JPEG")
CROP_SCALES = (0.3, 0.5, 0.7, 1.0)  # crop side as a share of the photo's shorter side


@lru_cache(maxsize=None)
def photos(assets: Path) -> tuple[tuple[str, np.ndarray], ...]:
    """Every natural photo in the assets (the globs the digits evaluation uses), decoded to RGB."""
    files = sorted({p for pattern in PHOTO_GLOBS for p in Path(assets).glob(pattern)})
    if not files:
        raise FileNotFoundError(f"no photos under {assets} ({', '.join(PHOTO_GLOBS)})")
    return tuple((str(p.relative_to(assets)), decode_image(p.read_bytes()).pixels) for p in files)


def tile(images: np.ndarray, n: int) -> np.ndarray:
    """``n`` images, repeating ``images`` as needed (a batch larger than the set of photos)."""
    reps = -(-n // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:n])


def classifier_images(assets: Path) -> np.ndarray:
    """[P, 224, 224, 3]: each photo through the served classifier transform (resize 256, centre 224)."""
    return np.stack([classifier_standard(px) for _, px in photos(assets)])


def sample_photos(assets: Path) -> list[tuple[str, np.ndarray]]:
    return [(name, classifier_standard(decode_image((assets / name).read_bytes()).pixels)) for name in SAMPLE_PHOTOS]


def detector_images(assets: Path) -> np.ndarray:
    """[P, 240, 320, 3]: each photo as the face detector's input."""
    return np.stack([detector_input(px) for _, px in photos(assets)])


def random_crops(assets: Path, count: int, seed: int, size: int = 224, flips: bool = True
                 ) -> tuple[np.ndarray, list[str]]:
    """``count`` square crops of the photos at the ``CROP_SCALES``, uniform position, optionally
    mirrored, resized to ``size``; seeded. Returns the crops and a description of each."""
    rng = np.random.default_rng(seed)
    source = photos(assets)
    crops, names = [], []
    for i in range(count):
        name, px = source[i % len(source)]
        h, w = px.shape[:2]
        side = max(16, int(min(h, w) * CROP_SCALES[int(rng.integers(len(CROP_SCALES)))]))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = px[y : y + side, x : x + side]
        flip = bool(flips and rng.integers(2))
        if flip:
            crop = crop[:, ::-1]
        crops.append(resize_exact(np.ascontiguousarray(crop), (size, size)))
        names.append(f"{name}@{x},{y},{side}{',flipped' if flip else ''}")
    return np.stack(crops), names


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 28, 28, 1] (raw, light ink on black, as the digits evaluation feeds it) and labels."""
    from lensgraph.datasets.mnist import load_split

    data = load_split(split)
    return np.ascontiguousarray(data.images[..., None]), data.labels


def digit_feeds(images: np.ndarray, samples: int, rng: np.random.Generator | None, sizes=(1024, 128),
                p: float = 0.5) -> dict[str, np.ndarray]:
    """The digits graph's inputs: with ``rng`` None the deterministic pass (T=1, all-ones masks)."""
    from lensgraph.uncertainty.mc_dropout import make_masks

    if rng is None:
        m1, m2 = (np.ones((1, len(images), s), np.float32) for s in sizes)
    else:
        m1, m2 = make_masks(samples, len(images), sizes, p, rng)
    return {"image": images, "mask1": m1, "mask2": m2}
