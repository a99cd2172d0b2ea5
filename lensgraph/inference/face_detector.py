"""Model A runner: UltraFace boxes in the original image's pixels, after OpenCV's NMS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.detection import decode_ultraface


@dataclass
class DetectionDefaults:
    score_threshold: float = 0.7
    iou_threshold: float = 0.3
    max_faces: int = 50


class FaceDetectorRunner(ModelRunner):
    """Items: (uint8 HxWx3 at the model's input size, original width, original height,
    score_threshold or None, iou_threshold or None); None takes ``self.defaults``."""

    defaults = DetectionDefaults()

    def run_batch(self, items: list[tuple[Any, ...]]) -> list[list[dict[str, float]]]:
        scores, boxes = self.run_session(np.stack([item[0] for item in items]))
        d = self.defaults
        return [
            [
                face.to_dict()
                for face in decode_ultraface(
                    scores[i], boxes[i], width, height,
                    score_threshold=d.score_threshold if score is None else score,
                    iou_threshold=d.iou_threshold if iou is None else iou,
                    max_faces=d.max_faces,
                )
            ]
            for i, (_, width, height, score, iou) in enumerate(items)
        ]
