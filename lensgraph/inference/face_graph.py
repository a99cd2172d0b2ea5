"""The face graph's glue between model A and model B, shared by the Preprocessor deployment and
the in-process pipelines: one square crop per detected face, landmarks back into image pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from lensgraph.imaging.transforms import CropBox, square_face_crop
from lensgraph.postprocess.landmarks import landmark_records


def face_crops(gray: np.ndarray, faces: list[dict[str, float]], size: int = 96, scale: float = 1.0
               ) -> list[tuple[np.ndarray, CropBox]]:
    """One ``size`` x ``size`` crop (uint8, HxW) per face box, with the box it was cut from."""
    return [square_face_crop(gray, (f["x1"], f["y1"], f["x2"], f["y2"]), size, scale) for f in faces]


def attach_landmarks(faces: list[dict[str, Any]], boxes: list[CropBox], results: list[dict[str, np.ndarray]],
                     size: int = 96) -> None:
    """Put each face's 15 named landmarks, mapped from crop to image pixels, into the face dict."""
    for face, box, result in zip(faces, boxes, results):
        points = box.to_image(result["points"], out_size=size)
        face["landmarks"] = landmark_records(points, result["confidence"])
