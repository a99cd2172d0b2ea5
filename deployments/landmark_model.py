"""Model B deployment: crops from many requests and many faces share LandmarkRunner's batches."""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.inference.landmarks import LandmarkRunner


@serve.deployment(name="LandmarkModel", max_ongoing_requests=128)
class LandmarkModel(BatchedModel):
    runner_class = LandmarkRunner

    async def predict(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        """``crop``: uint8 96x96x1. Returns points (15, 2) in crop pixels and a confidence per point."""
        return await self.infer(crop)
