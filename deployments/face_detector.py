"""Model A: the UltraFace face detector. Batches 320x240 uint8 images; returns boxes in the
original image's pixel coordinates after OpenCV's NMS."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from deployments.model_base import BatchedModel, ModelSettings
from lensgraph.postprocess.detection import decode_ultraface


class FaceDetectorSettings(ModelSettings):
    score_threshold: float = Field(0.7, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.3, ge=0.0, le=1.0)
    max_faces: int = Field(50, ge=1, le=1000)


@serve.deployment(name="FaceDetector", max_ongoing_requests=64)
class FaceDetector(BatchedModel):
    settings_class = FaceDetectorSettings

    async def detect(
        self,
        image: np.ndarray,
        width: int,
        height: int,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
    ) -> list[dict[str, float]]:
        """``image``: uint8 HxWx3 at the model's input size; width/height: the original image's."""
        return await self.infer((image, width, height, score_threshold, iou_threshold))

    def run_batch(self, items: list[tuple[Any, ...]]) -> list[list[dict[str, float]]]:
        scores, boxes = self.run_session(np.stack([item[0] for item in items]))
        s = self.settings
        return [
            [
                face.to_dict()
                for face in decode_ultraface(
                    scores[i], boxes[i], width, height,
                    score_threshold=s.score_threshold if score is None else score,
                    iou_threshold=s.iou_threshold if iou is None else iou,
                    max_faces=s.max_faces,
                )
            ]
            for i, (_, width, height, score, iou) in enumerate(items)
        ]
