"""``POST /v1/faces``: model A's views of a photo, one crop per face for model B, and the answer.

The caller holds the decoded photo between the two model calls, so crops are cut where the
pixels already are and only small tensors reach the models. Model A sees the whole photo
letterboxed plus overlapping tiles when the photo is large (lensgraph.imaging.tiling), so a
group photo's small faces are found; ``tile_width``, ``tile_overlap`` and ``max_tiles`` bound it, and a
request's ``min_face`` (the smallest face height it needs found, default 48 px) scales the tiles: a
caller who only wants portrait-sized faces pays for a few views, not dozens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lensgraph.imaging import tiling
from lensgraph.imaging.decode import to_gray
from lensgraph.imaging.transforms import CropBox, as_rgb, square_face_crop
from lensgraph.postprocess.landmarks import landmark_records
from lensgraph.routes import input_hw, model_ref


@dataclass(frozen=True)
class FaceGeometry:
    """Model A's input size (from its card), model B's crop side (from its card), the crop's margin,
    and how large photos are tiled for model A (lensgraph.imaging.tiling)."""

    detector_size: tuple[int, int]  # (width, height)
    landmark_size: int
    crop_scale: float = 1.0
    # Chosen by benchmarks/faces_recall.py on seeds 0-49 (docs/faces.md, docs/benchmarks/faces_recall.md):
    # 800-px tiles found every face >= 48 px, as 480 and 640 did, with the fewest views; a higher score
    # for tiles' faces (0.8, 0.9) cut false positives a little but lost a face.
    tile_width: int = 800
    tile_overlap: float = 0.5
    max_tiles: int = 64
    tile_score_threshold: float = 0.7

    @classmethod
    def from_cards(cls, detector: dict[str, Any], landmarks: dict[str, Any], crop_scale: float = 1.0,
                   **tiles: Any) -> "FaceGeometry":
        """Tiling from the detector card's ``options`` (tile_width, tile_overlap, max_tiles,
        tile_score_threshold), where ``tiles`` (the ingress's live settings) does not override them."""
        h, w = input_hw(detector)
        side, side_w = input_hw(landmarks)
        if side != side_w:
            raise ValueError(f"{landmarks['name']}: landmark crops must be square, the card says {side}x{side_w}")
        options = detector.get("options") or {}
        chosen = {key: options[key] for key in TILE_OPTIONS if key in options}
        chosen.update({key: value for key, value in tiles.items() if value is not None})
        return cls(detector_size=(w, h), landmark_size=side, crop_scale=crop_scale, **chosen)


TILE_OPTIONS = ("tile_width", "tile_overlap", "max_tiles", "tile_score_threshold")


DEFAULT_MIN_FACE = 48  # px: the face height FaceGeometry.tile_width was chosen to find (docs/faces.md)


def photo_plan(width: int, height: int, geometry: FaceGeometry, min_face: int | None = None) -> tiling.TilePlan:
    """The detector's views of a photo: tiles scaled so that faces of ``min_face`` px are as large for
    the detector as 48-px faces are in ``geometry.tile_width`` tiles."""
    tile_width = round(geometry.tile_width * (min_face or DEFAULT_MIN_FACE) / DEFAULT_MIN_FACE)
    return tiling.plan(width, height, geometry.detector_size, tile_width, geometry.tile_overlap, geometry.max_tiles)


def detector_item(pixels: np.ndarray, geometry: FaceGeometry, score_threshold: float | None = None,
                  iou_threshold: float | None = None, max_faces: int | None = None,
                  min_face: int | None = None, plan: tiling.TilePlan | None = None) -> tuple[Any, ...]:
    """The FaceDetectorRunner's item: the photo's views at the model's input size, the views, the
    original size and the per-request thresholds. ``plan``: the photo's plan when the caller already
    made it (for :func:`answer`), else made here from ``min_face``."""
    h, w = pixels.shape[:2]
    views = (plan or photo_plan(w, h, geometry, min_face)).views
    return (tiling.view_inputs(as_rgb(pixels), views, geometry.detector_size), views, w, h, score_threshold,
            iou_threshold, max_faces, geometry.tile_score_threshold)


def crops(pixels: np.ndarray, faces: list[dict[str, float]], geometry: FaceGeometry
          ) -> list[tuple[np.ndarray, CropBox]]:
    """One square grayscale crop (side x side x 1, uint8) per face box, with the box it came from."""
    if not faces:
        return []
    gray = to_gray(pixels)
    out = []
    for f in faces:
        crop, box = square_face_crop(gray, (f["x1"], f["y1"], f["x2"], f["y2"]), geometry.landmark_size,
                                     geometry.crop_scale)
        out.append((crop[..., None], box))
    return out


def face_record(face: dict[str, float], box: CropBox | None = None, result: dict[str, Any] | None = None,
                size: int = 96) -> dict[str, Any]:
    """One face of the answer: its box and score, and model B's 15 points mapped into the photo."""
    record: dict[str, Any] = {"box": {k: face[k] for k in ("x1", "y1", "x2", "y2")}, "score": face["score"],
                              "landmarks": []}
    if box is not None and result is not None:
        record["landmarks"] = landmark_records(box.to_image(result["points"], out_size=size), result["confidence"])
    return record


def answer(detector: dict[str, Any], landmarks: dict[str, Any], width: int, height: int,
           faces: list[dict[str, float]], cut: list[tuple[np.ndarray, CropBox]] | None,
           results: list[dict[str, Any]] | None, geometry: FaceGeometry, min_face: int | None = None,
           plan: tiling.TilePlan | None = None) -> dict[str, Any]:
    """The API's answer; ``cut`` and ``results`` are None when landmarks were not asked for."""
    if cut is None or results is None:
        records = [face_record(f) for f in faces]
    else:
        records = [face_record(f, box, r, geometry.landmark_size) for f, (_, box), r in zip(faces, cut, results)]
    return {"models": [model_ref(detector), model_ref(landmarks)], "image": {"width": width, "height": height},
            "faces": records, "search": search(width, height, geometry, min_face, plan)}


def search(width: int, height: int, geometry: FaceGeometry, min_face: int | None = None,
           plan: tiling.TilePlan | None = None) -> dict[str, Any]:
    """How the photo was searched: the smallest face asked for, the detector's views, the tile width,
    and a warning when the tile cap made the tiles coarser (smaller faces may then be missed)."""
    result = plan or photo_plan(width, height, geometry, min_face)
    out: dict[str, Any] = {"min_face": int(min_face or DEFAULT_MIN_FACE), "views": len(result.views),
                           "tile_width": result.tile_width, "capped": result.capped, "warning": None}
    if result.capped:
        smallest = round(tiling.MIN_FACE_INPUT * result.tile_width / geometry.detector_size[0])
        out["warning"] = (f"the photo needed more than max_tiles={geometry.max_tiles} tiles: searched with "
                          f"{result.tile_width}-px tiles, so faces under about {smallest} px tall may be missed")
    return out
