"""Model B runner: 15 landmarks from 96x96 grayscale face crops.

Serves either the 15-point regressor (30 numbers out) or a heatmap UNet (15x96x96 out, decoded by
argmax with sub-pixel refinement); the model card's task says which.
"""

from __future__ import annotations

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.landmarks import decode_heatmaps, decode_regressor


class LandmarkRunner(ModelRunner):
    """Items: uint8 96x96x1 crops. Results: points (15, 2) in crop pixels, a confidence per point."""

    def run_batch(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        (out,) = self.run_session(np.stack(items))
        size = items[0].shape[0]
        if self.entry.card.get("task") == "landmark_heatmaps":
            points, confidence = decode_heatmaps(out)
            # Heatmap pixel i is centred at i; crop coordinates are continuous ([i, i+1) is pixel i).
            points = (points + 0.5) * (size / out.shape[-1])
        else:
            points = decode_regressor(out, crop_size=size)
            confidence = np.full(points.shape[:2], np.nan, dtype=np.float32)
        return [{"points": points[i], "confidence": confidence[i]} for i in range(len(items))]
