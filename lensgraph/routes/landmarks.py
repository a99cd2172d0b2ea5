"""``POST /v1/landmarks``: the whole upload is one face; model B's 15 points in its pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from lensgraph.imaging.decode import to_gray
from lensgraph.imaging.transforms import CropBox, square_face_crop
from lensgraph.postprocess.landmarks import landmark_records
from lensgraph.routes import input_hw, model_ref


def crop_side(card: dict[str, Any]) -> int:
    h, w = input_hw(card)
    if h != w:
        raise ValueError(f"{card['name']}: landmark crops must be square, the card says {h}x{w}")
    return h


def prepare(pixels: np.ndarray, side: int) -> tuple[np.ndarray, CropBox]:
    """The upload's centred square, as a side x side x 1 grayscale crop, and where it came from."""
    h, w = pixels.shape[:2]
    crop, box = square_face_crop(to_gray(pixels), (0.0, 0.0, float(w), float(h)), side)
    return crop[..., None], box


def answer(card: dict[str, Any], width: int, height: int, box: CropBox, result: dict[str, Any], side: int
           ) -> dict[str, Any]:
    points = box.to_image(result["points"], out_size=side)
    return {"model": model_ref(card), "image": {"width": width, "height": height},
            "landmarks": landmark_records(points, result["confidence"])}
