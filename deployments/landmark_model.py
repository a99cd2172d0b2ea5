"""Model B: 15 facial landmarks from one 96x96 grayscale face crop.

Serves either the 15-point regressor (30 numbers out, the default, real weights) or a heatmap
UNet (15x96x96 out, decoded by argmax with sub-pixel refinement); the model card's task says
which. Crops from many requests and many faces share batches.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.postprocess.landmarks import decode_heatmaps, decode_regressor


@serve.deployment(name="LandmarkModel", max_ongoing_requests=128)
class LandmarkModel(BatchedModel):
    async def predict(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        """``crop``: uint8 96x96x1. Returns points (15, 2) in crop pixels and a confidence per point."""
        return await self.infer(crop)

    def run_batch(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        (out,) = self.run_session(np.stack(items))
        size = items[0].shape[0]
        if self.require_model().card.get("task") == "landmark_heatmaps":
            points, confidence = decode_heatmaps(out)
            # Heatmap pixel i is centred at i; crop coordinates are continuous ([i, i+1) is pixel i).
            points = (points + 0.5) * (size / out.shape[-1])
        else:
            points = decode_regressor(out, crop_size=size)
            confidence = np.full(points.shape[:2], np.nan, dtype=np.float32)
        return [{"points": points[i], "confidence": confidence[i]} for i in range(len(items))]
