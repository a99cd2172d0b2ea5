"""Object detector runner (darknet YOLOv2 exported by lensgraph): one ONNX Runtime call per batch.

It returns each image's raw region tensor rather than boxes: decoding needs the letterbox mapping and
the request's thresholds, which the caller holds (lensgraph.routes.detect.answer), and the tensor is
small (125 x 13 x 13 float32 for yolov2-tiny-voc). :meth:`DetectorRunner.detect` does the whole route
in-process, for the floor, the baseline and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.classification import load_labels
from lensgraph.repository.store import ModelEntry
from lensgraph.runtime.session import SessionConfig


class DetectorRunner(ModelRunner):
    """Items: uint8 [H, W, 3] letterboxed images at the model's input size (lensgraph.routes.detect.prepare);
    results: float32 [C, h, w] region outputs, one per item."""

    def __init__(self, entry: ModelEntry, session_config: SessionConfig = SessionConfig()) -> None:
        from lensgraph.routes.detect import DetectGeometry

        super().__init__(entry, session_config)
        self.geometry = DetectGeometry.from_card(entry.card)
        labels = entry.labels_path
        self.labels: list[str] | None = load_labels(labels) if labels else None

    def run_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        (region,) = self.run_session(np.stack(items))
        return [np.ascontiguousarray(region[i]) for i in range(len(items))]

    def serve_batch(self, items: Sequence[tuple[np.ndarray, Any, Any]]) -> list[dict[str, Any]]:
        """The deployment's items: (letterboxed image, its LetterboxMapping, the request's Thresholds).
        One session call for the batch, then each answer decoded here, beside the labels: only the
        boxes travel back to the ingress, not the region tensors."""
        from lensgraph.routes import detect

        regions = self.run_batch([image for image, _, _ in items])
        return [detect.answer(self.geometry, region, mapping, limits, self.labels)
                for region, (_, mapping, limits) in zip(regions, items)]

    def detect(self, pixels: np.ndarray, score_threshold: float | None = None, iou_threshold: float | None = None,
               max_detections: int | None = None) -> dict[str, Any]:
        """One photo through prepare -> the model -> answer, as /v1/detect answers it."""
        from lensgraph.routes import detect

        limits = detect.thresholds(self.geometry, score_threshold, iou_threshold, max_detections)
        image, mapping = detect.prepare(pixels, self.geometry)
        return detect.answer(self.geometry, self.run_batch([image])[0], mapping, limits, self.labels)
