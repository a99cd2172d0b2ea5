"""YOLOv2 ``[region]`` outputs -> boxes, decoded in Python the way darknet's region layer does.

The exported graph stops at the raw ``[N, num*(coords+1+classes), H, W]`` tensor: the sigmoid, exp
and softmax here are a few thousand numbers per image, and keeping them out of the graph keeps the
artefact exactly darknet's network. For anchor ``n`` of cell (row, col), with channels
``n*(coords+1+classes) + k``:

    x = (col + sigmoid(tx)) / W          w = exp(tw) * anchor_w / W
    y = (row + sigmoid(ty)) / H          h = exp(th) * anchor_h / H
    score(class) = sigmoid(objectness) * softmax(class logits)[class]

Like darknet, every (box, class) pair whose score is strictly above the threshold is a candidate
(so a box may carry two classes at low thresholds), duplicates are removed per class by OpenCV's
``cv2.dnn.NMSBoxes`` (IoU strictly above ``iou_threshold`` suppresses) and the best ``max_detections``
are kept. Boxes come out in network-input pixels; lensgraph.imaging.letterbox maps them to the photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["RegionSpec", "Detection", "decode_region", "detection_records"]


@dataclass(frozen=True)
class RegionSpec:
    """A darknet ``[region]`` layer's decoding parameters; anchors are in grid cells, (w, h) each."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    coords: int = 4
    softmax: bool = True

    def __post_init__(self) -> None:
        if not self.anchors or any(len(a) != 2 or a[0] <= 0 or a[1] <= 0 for a in self.anchors):
            raise ValueError(f"anchors must be positive (w, h) pairs, got {self.anchors!r}")
        if self.classes < 1 or self.coords != 4 or not self.softmax:
            raise ValueError("YOLOv2 region decoding needs classes >= 1, coords = 4 and softmax = 1; got "
                             f"classes={self.classes}, coords={self.coords}, softmax={int(self.softmax)}")

    @property
    def num(self) -> int:
        return len(self.anchors)

    @property
    def channels(self) -> int:
        return self.num * (self.coords + 1 + self.classes)

    @classmethod
    def from_flat(cls, anchors: Sequence[float], classes: int, num: int | None = None, coords: int = 4,
                  softmax: bool = True) -> "RegionSpec":
        """From darknet's flat ``anchors = w0,h0, w1,h1, ...`` list (``num`` checks its length)."""
        values = [float(a) for a in anchors]
        if len(values) % 2 or (num is not None and len(values) != 2 * num):
            raise ValueError(f"anchors has {len(values)} values; need 2 per anchor (num={num})")
        pairs = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
        return cls(pairs, int(classes), int(coords), bool(softmax))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RegionSpec":
        """From :meth:`to_dict` (what a model card's ``options.region`` holds)."""
        return cls.from_flat(data["anchors"], data["classes"], data.get("num"), data.get("coords", 4),
                             data.get("softmax", True))

    def to_dict(self) -> dict[str, Any]:
        return {"anchors": [float(v) for pair in self.anchors for v in pair], "num": self.num,
                "classes": self.classes, "coords": self.coords, "softmax": self.softmax}


@dataclass(frozen=True)
class Detection:
    """One box in network-input pixels (not clipped), its score and class."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode_region(
    output: np.ndarray,
    region: RegionSpec,
    input_size: tuple[int, int],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[Detection]:
    """Detections from one image's region output (``[C, H, W]`` or ``[1, C, H, W]``), best first.

    ``input_size`` is the network input's (width, height) in pixels, the unit of the boxes.
    """
    raw = np.asarray(output, dtype=np.float64)
    if raw.ndim == 4 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 3 or raw.shape[0] != region.channels:
        raise ValueError(f"expected a region output [{region.channels}, H, W] for {region.num} anchors and "
                         f"{region.classes} classes, got {list(np.shape(output))}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    _, grid_h, grid_w = raw.shape
    entries = raw.reshape(region.num, region.coords + 1 + region.classes, grid_h, grid_w)
    objectness = _sigmoid(entries[:, 4])
    logits = entries[:, 5:]
    probs = _softmax(logits, axis=1)
    scores = objectness[:, None] * probs  # [num, classes, H, W]
    anchor, class_id, row, col = np.nonzero(scores > score_threshold)
    if anchor.size == 0:
        return []
    anchors = np.asarray(region.anchors, np.float64)
    net_w, net_h = input_size
    cx = (col + _sigmoid(entries[anchor, 0, row, col])) / grid_w * net_w
    cy = (row + _sigmoid(entries[anchor, 1, row, col])) / grid_h * net_h
    bw = np.exp(entries[anchor, 2, row, col]) * anchors[anchor, 0] / grid_w * net_w
    bh = np.exp(entries[anchor, 3, row, col]) * anchors[anchor, 1] / grid_h * net_h
    candidate_scores = scores[anchor, class_id, row, col]
    xywh = np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh])

    kept: list[int] = []
    for c in np.unique(class_id):
        members = np.flatnonzero(class_id == c)
        picked = cv2.dnn.NMSBoxes(xywh[members], candidate_scores[members].astype(np.float32),
                                  float(score_threshold), float(iou_threshold))
        kept.extend(members[np.asarray(picked, np.int64).reshape(-1)].tolist())
    kept.sort(key=lambda i: (-candidate_scores[i], i))
    return [Detection(float(xywh[i, 0]), float(xywh[i, 1]), float(xywh[i, 0] + xywh[i, 2]),
                      float(xywh[i, 1] + xywh[i, 3]), float(candidate_scores[i]), int(class_id[i]))
            for i in kept[:max_detections]]


def detection_records(boxes: np.ndarray, detections: Sequence[Detection],
                      labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The API's records: ``boxes`` [N, 4] are the detections' boxes already in image pixels."""
    out = []
    for box, det in zip(boxes, detections):
        label = labels[det.class_id] if labels is not None and det.class_id < len(labels) else str(det.class_id)
        out.append({"box": [float(v) for v in box], "score": float(det.score), "class_id": int(det.class_id),
                    "label": label})
    return out
