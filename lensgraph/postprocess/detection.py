"""UltraFace (RFB-320/640) outputs -> face boxes in original image pixels.

The exported detector already decodes anchors and softmaxes scores, so what is left is
thresholding, scaling the normalised corners to the image and non-maximum suppression. NMS is
OpenCV's ``cv2.dnn.NMSBoxes`` (exact IoU on float boxes, strict ``score > threshold``) rather
than a hand-written loop, so there is one well-tested implementation to trust.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.tiling import MAX_FACE_SHARE, MIN_TILE_FACE_INPUT

__all__ = ["FaceBox", "decode_ultraface", "merge_views"]


@dataclass(frozen=True)
class FaceBox:
    """One detected face: corners in original image pixels and the face probability."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


def decode_ultraface(
    scores: np.ndarray,
    boxes: np.ndarray,
    image_width: int,
    image_height: int,
    score_threshold: float = 0.7,
    iou_threshold: float = 0.3,
    max_faces: int = 100,
) -> list[FaceBox]:
    """Faces from UltraFace outputs, best first.

    ``scores`` is ``[N, 2]`` (column 1 = face probability) and ``boxes`` ``[N, 4]`` normalised
    ``x1, y1, x2, y2``; a leading batch axis of 1 is accepted. Faces need a score strictly
    above ``score_threshold``; overlapping ones (IoU above ``iou_threshold``) are suppressed,
    at most ``max_faces`` are kept, and the kept boxes are clipped to the image.
    """
    _check_unit("score_threshold", score_threshold)
    _check_unit("iou_threshold", iou_threshold)
    if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 1:
        raise InvalidRequest(f"max_faces must be a positive integer, got {max_faces!r}.")
    if image_width < 1 or image_height < 1:
        raise ValueError(f"image size must be positive, got {image_width}x{image_height}")
    face_prob, corners = _as_arrays(scores, boxes)
    keep = face_prob > score_threshold
    if not np.any(keep):
        return []
    face_prob, corners = face_prob[keep], corners[keep]
    pixels = corners * np.array([image_width, image_height, image_width, image_height], np.float64)
    xywh = np.column_stack([pixels[:, :2], pixels[:, 2:] - pixels[:, :2]])
    picked = cv2.dnn.NMSBoxes(
        xywh, face_prob.astype(np.float32), score_threshold, iou_threshold, top_k=int(max_faces)
    )
    order = sorted(np.asarray(picked, dtype=np.int64).reshape(-1), key=lambda i: -face_prob[i])
    return [_clipped(pixels[i], float(face_prob[i]), image_width, image_height) for i in order]


def _check_unit(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= float(value) <= 1.0):
        raise InvalidRequest(f"{name} must be a number between 0 and 1, got {value!r}.")


def _as_arrays(scores: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)
    if s.ndim == 3 and s.shape[0] == 1:
        s = s[0]
    if b.ndim == 3 and b.shape[0] == 1:
        b = b[0]
    if s.ndim != 2 or s.shape[1] != 2 or b.shape != (s.shape[0], 4):
        raise ValueError(f"expected scores [N,2] and boxes [N,4], got {s.shape} and {b.shape}")
    return s[:, 1], b


def _clipped(xyxy: np.ndarray, score: float, width: int, height: int) -> FaceBox:
    x1, x2 = np.clip(xyxy[[0, 2]], 0.0, float(width))
    y1, y2 = np.clip(xyxy[[1, 3]], 0.0, float(height))
    return FaceBox(float(x1), float(y1), float(x2), float(y2), score)


def merge_views(per_view: list[list[FaceBox]], views, photo_width: int, photo_height: int,
                iou_threshold: float = 0.3, max_faces: int = 100, containment: float = 0.7,
                tile_score_threshold: float = 0.0) -> list[FaceBox]:
    """Faces found in several views of one photo (lensgraph.imaging.tiling) -> one box per face, best first.

    ``per_view[i]`` holds view i's faces in its letterboxed input's pixels. Each box is mapped to
    the photo; a tile's box is dropped when its score is not above ``tile_score_threshold`` (tiles
    show the detector much more background per face, hence more false positives), when it is under
    ``MIN_TILE_FACE_INPUT`` px tall in the tile's input (below the sizes the search is for), when it
    touches one of the tile's inner edges (a face cut by the tile, found whole in an overlapping one)
    or is taller than ``MAX_FACE_SHARE`` of the tile (a fragment of a face too large for it). The rest
    go through one NMS over the whole photo, and a box lying mostly (``containment`` of its area)
    inside a larger kept one is dropped too: the part of a face seen at another scale.
    """
    boxes: list[FaceBox] = []
    for faces, view in zip(per_view, views):
        for face in faces:
            mapped = view.to_photo(*face.xyxy())
            if not view.whole and (face.score <= tile_score_threshold or face.height < MIN_TILE_FACE_INPUT
                                   or view.cuts(mapped, photo_width, photo_height)
                                   or mapped[3] - mapped[1] > MAX_FACE_SHARE * view.height):
                continue
            boxes.append(_clipped(np.array(mapped), face.score, photo_width, photo_height))
    if not boxes:
        return []
    xyxy = np.array([b.xyxy() for b in boxes], np.float64)
    scores = np.array([b.score for b in boxes], np.float32)
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    picked = np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold), np.int64).reshape(-1)
    # Largest first for the containment rule: a box inside another is a part of that face (a tile saw the
    # mouth and chin of a face the next level saw whole, both with score 1.0), whatever their scores.
    areas = xywh[:, 2] * xywh[:, 3]
    kept: list[int] = []
    for i in sorted(picked, key=lambda k: -areas[k]):
        if all(_inside_share(xyxy[i], xyxy[j]) < containment for j in kept):
            kept.append(i)
    kept.sort(key=lambda k: -scores[k])
    return [boxes[i] for i in kept[:max_faces]]


def _inside_share(box: np.ndarray, other: np.ndarray) -> float:
    """Share of ``box``'s area inside ``other``."""
    w = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    h = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return w * h / area
