"""Model B deployment: the face crops of many requests share LandmarkRunner's batches.

One call carries every face of one request (a [k, S, S, 1] stack), so a photo with 64 faces is one
hop, not 64; ``max_batch_size`` counts those calls.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.inference.landmarks import LandmarkRunner


@serve.deployment(name="LandmarkModel", max_ongoing_requests=128)
class LandmarkModel(BatchedModel):
    runner_class = LandmarkRunner

    async def predict_many(self, crops: np.ndarray) -> list[dict[str, np.ndarray]]:
        """``crops``: uint8 [k, S, S, 1]. Returns k results: points (15, 2) in crop pixels, a confidence each."""
        if crops.ndim != 4 or len(crops) == 0:
            raise ValueError(f"crops must be a non-empty [k, S, S, 1] stack, got shape {crops.shape}")
        return await self.infer(crops)

    def run_batch(self, items: list[np.ndarray]) -> list[list[dict[str, np.ndarray]]]:
        return self.runner.run_groups(items)
