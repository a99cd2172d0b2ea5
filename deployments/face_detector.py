"""Model A deployment: batches 320x240 uint8 images into FaceDetectorRunner (UltraFace + NMS)."""

from __future__ import annotations

import numpy as np
from pydantic import Field
from ray import serve

from deployments.model_base import BatchedModel, ModelSettings
from lensgraph.inference.face_detector import DetectionDefaults, FaceDetectorRunner


class FaceDetectorSettings(ModelSettings):
    score_threshold: float = Field(0.7, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.3, ge=0.0, le=1.0)
    max_faces: int = Field(50, ge=1, le=1000)


@serve.deployment(name="FaceDetector", max_ongoing_requests=64)
class FaceDetector(BatchedModel):
    settings_class = FaceDetectorSettings
    runner_class = FaceDetectorRunner

    def configure_runner(self, runner: FaceDetectorRunner, settings: FaceDetectorSettings) -> None:
        runner.defaults = DetectionDefaults(settings.score_threshold, settings.iou_threshold, settings.max_faces)

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
