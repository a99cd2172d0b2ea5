"""Model A deployment: batches the views of many photos into FaceDetectorRunner (UltraFace, one
call for every view of every photo of a batch, merged into one box per face)."""

from __future__ import annotations

import numpy as np
from pydantic import Field
from ray import serve

from deployments.model_base import BatchedModel, ModelSettings
from lensgraph.inference.face_detector import MAX_FACES_LIMIT, DetectionDefaults, FaceDetectorRunner


class FaceDetectorSettings(ModelSettings):
    score_threshold: float = Field(0.7, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.3, ge=0.0, le=1.0)
    max_faces: int = Field(100, ge=1, le=MAX_FACES_LIMIT, description="faces per photo when a request does not say")


@serve.deployment(name="FaceDetector", max_ongoing_requests=64)
class FaceDetector(BatchedModel):
    settings_class = FaceDetectorSettings
    runner_class = FaceDetectorRunner

    def configure_runner(self, runner: FaceDetectorRunner, settings: FaceDetectorSettings) -> None:
        runner.defaults = DetectionDefaults(settings.score_threshold, settings.iou_threshold, settings.max_faces)

    async def detect(
        self,
        views: np.ndarray,
        regions: tuple,
        width: int,
        height: int,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_faces: int | None = None,
        tile_score_threshold: float | None = None,
    ) -> list[dict[str, float]]:
        """``views``: uint8 [V, H, W, 3] at the model's input size, ``regions`` the V ``tiling.View``s
        they show; width/height: the original photo's (lensgraph.routes.faces.detector_item)."""
        return await self.infer((views, regions, width, height, score_threshold, iou_threshold, max_faces,
                                 tile_score_threshold))
