"""The requests each pipeline is measured with: real images from the assets, sent as raw bodies."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PIPELINES = ("classify", "faces", "digits")
PATHS = {"classify": "/v1/classify", "faces": "/v1/faces", "digits": "/v1/digits"}
FACE_PHOTOS = ("faces/obama.jpg", "faces/biden.jpg", "faces/astronaut.png", "face_detector/linzaer_imgs_2.jpg",
               "face_detector/linzaer_imgs_13.jpg")
CLASSIFY_PHOTOS = ("imagenet/n01440764_tench.JPEG", "imagenet/n01667114_mud_turtle.JPEG")
DIGITS = 64


@dataclass
class Workload:
    pipeline: str
    path: str
    images: list[bytes]
    content_type: str
    description: str


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def load(pipeline: str, assets: Path) -> Workload:
    if pipeline == "classify":
        return Workload(pipeline, PATHS[pipeline], [(assets / p).read_bytes() for p in CLASSIFY_PHOTOS], "image/jpeg",
                        "the two ImageNet sample photos (JPEG, about 500x375), top_k=2")
    if pipeline == "faces":
        return Workload(pipeline, PATHS[pipeline], [(assets / p).read_bytes() for p in FACE_PHOTOS],
                        "application/octet-stream", "five face photos with 1-4 faces each (9 faces in all)")
    if pipeline == "digits":
        from lensgraph.datasets.mnist import load_split

        test = load_split("test", assets / "mnist")
        images = [_png(test.images[k] if k % 2 else 255 - test.images[k]) for k in range(DIGITS)]
        return Workload(pipeline, PATHS[pipeline], images, "image/png",
                        f"the first {DIGITS} MNIST test digits as PNG, half inverted; T = 30 Monte-Carlo samples")
    raise ValueError(f"unknown pipeline {pipeline!r}")
