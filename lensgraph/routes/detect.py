"""``POST /v1/detect``: a photo letterboxed into the detector's input, and its region output decoded
into boxes in the photo's pixels.

The caller (ingress, in-process floor, baseline) holds the photo and its letterbox mapping between the
two calls; the model deployment only runs the graph (lensgraph.inference.detector) and returns the raw
region tensor, about 84 KB per image for yolov2-tiny-voc, which :func:`answer` decodes here, beside the
mapping. Everything geometric comes from the card: input size, letterbox fill and resize, anchors,
classes and the default thresholds.

    geometry = DetectGeometry.from_card(card)          # once, when the route is set up
    limits = thresholds(geometry, score_threshold=q)   # per request: 422 when out of range
    image, mapping = prepare(pixels, geometry)         # uint8 [H, W, 3] for the model
    region = runner.run_batch([image])[0]              # [C, h, w] float32, or a deployment's answer
    body = answer(geometry, region, mapping, limits, labels)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.letterbox import DARKNET_FILL, LetterboxMapping, letterbox
from lensgraph.imaging.resize import OPENCV_BILINEAR, ResizeSpec
from lensgraph.imaging.transforms import as_rgb
from lensgraph.postprocess.yolo_region import RegionSpec, decode_region, detection_records
from lensgraph.routes import input_hw, model_ref

__all__ = ["SCORE_RANGE", "IOU_RANGE", "MAX_DETECTIONS_RANGE", "Thresholds", "DetectGeometry", "check_thresholds",
           "thresholds", "prepare", "answer"]

SCORE_RANGE = (0.01, 1.0)
IOU_RANGE = (0.05, 1.0)
MAX_DETECTIONS_RANGE = (1, 1000)


@dataclass(frozen=True)
class Thresholds:
    score_threshold: float = 0.5
    iou_threshold: float = 0.45
    max_detections: int = 100


@dataclass(frozen=True)
class DetectGeometry:
    """What the route needs from the detector's card (``DetectGeometry.from_card``)."""

    input_size: tuple[int, int]  # (width, height)
    region: RegionSpec
    defaults: Thresholds
    model: dict[str, Any]
    fill: int = DARKNET_FILL
    resize: ResizeSpec = OPENCV_BILINEAR

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "DetectGeometry":
        h, w = input_hw(card)
        options = card.get("options") or {}
        if "region" not in options:
            raise ValueError(f"{card['name']}: the card has no options.region; rebuild it as a task: detection model")
        before = (card.get("preprocessing") or {}).get("before_graph") or {}
        defaults = Thresholds()
        defaults = check_thresholds(options.get("score_threshold", defaults.score_threshold),
                            options.get("iou_threshold", defaults.iou_threshold),
                            options.get("max_detections", defaults.max_detections), what=f"{card['name']} card options")
        return cls((w, h), RegionSpec.from_dict(options["region"]), defaults, model_ref(card),
                   int((before.get("letterbox") or {}).get("fill", DARKNET_FILL)),
                   ResizeSpec.from_card(before.get("resize"), OPENCV_BILINEAR))


def check_thresholds(score: Any, iou: Any, max_detections: Any, what: str = "request") -> Thresholds:
    """Thresholds in the API's ranges, or an InvalidRequest (422) naming the one that is not."""
    for name, value, (low, high) in (("score_threshold", score, SCORE_RANGE), ("iou_threshold", iou, IOU_RANGE)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
            raise InvalidRequest(f"{name} must be a number in [{low}, {high}], got {value!r} ({what})")
    low, high = MAX_DETECTIONS_RANGE
    if isinstance(max_detections, bool) or not isinstance(max_detections, (int, np.integer)) \
            or not low <= max_detections <= high:
        raise InvalidRequest(f"max_detections must be an integer in [{low}, {high}], got {max_detections!r} ({what})")
    return Thresholds(float(score), float(iou), int(max_detections))


def thresholds(geometry: DetectGeometry, score_threshold: float | None = None, iou_threshold: float | None = None,
               max_detections: int | None = None) -> Thresholds:
    """A request's thresholds (None: the card's default), refused with a 422 when out of range."""
    d = geometry.defaults
    return check_thresholds(d.score_threshold if score_threshold is None else score_threshold,
                    d.iou_threshold if iou_threshold is None else iou_threshold,
                    d.max_detections if max_detections is None else max_detections)


def prepare(pixels: np.ndarray, geometry: DetectGeometry) -> tuple[np.ndarray, LetterboxMapping]:
    """HxW(x3) uint8 photo -> the detector's input (uint8 [H, W, 3], letterboxed) and the way back."""
    return letterbox(as_rgb(pixels), geometry.input_size, geometry.fill, geometry.resize)


def answer(geometry: DetectGeometry, region_output: np.ndarray, mapping: LetterboxMapping, limits: Thresholds,
           labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The API's answer from one image's region output: boxes ``[x1, y1, x2, y2]`` in the photo's pixels,
    clipped to it, best first."""
    found = decode_region(region_output, geometry.region, geometry.input_size, limits.score_threshold,
                          limits.iou_threshold, limits.max_detections)
    boxes = mapping.to_image(np.array([d.xyxy() for d in found], np.float64).reshape(-1, 4))
    detections = detection_records(boxes, found, labels)
    return {"model": geometry.model, "image": {"width": mapping.image_width, "height": mapping.image_height},
            "detections": detections, "count": len(detections), "thresholds": asdict(limits)}
