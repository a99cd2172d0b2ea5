"""Model B runner: 15 landmarks from square grayscale face crops (96x96 for the default model).

Serves either the 15-point regressor (30 numbers out) or a heatmap UNet (15xSxS out, decoded by
argmax with sub-pixel refinement); the model card's task says which.
"""

from __future__ import annotations

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.landmarks import decode_heatmaps, decode_regressor


class LandmarkRunner(ModelRunner):
    """Items: uint8 SxSx1 crops. Results: points (15, 2) in crop pixels, a confidence per point."""

    def run_batch(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.run_crops(np.stack(items))

    def serve_batch(self, items: list[np.ndarray]) -> list[list[dict[str, np.ndarray]]]:
        """The deployment's items are [k, S, S, 1] stacks (every face of one request)."""
        return self.run_groups(items)

    def run_groups(self, groups: list[np.ndarray]) -> list[list[dict[str, np.ndarray]]]:
        """Items: [k, S, S, 1] stacks, every face of one request; one session call for all of them."""
        flat = self.run_crops(np.concatenate(groups))
        out, start = [], 0
        for group in groups:
            out.append(flat[start : start + len(group)])
            start += len(group)
        return out

    def run_crops(self, crops: np.ndarray) -> list[dict[str, np.ndarray]]:
        (out,) = self.run_session(crops)
        size = crops.shape[1]
        if self.entry.card.get("task") == "landmark_heatmaps":
            points, confidence = decode_heatmaps(out)
            # Heatmap pixel i is centred at i; crop coordinates are continuous ([i, i+1) is pixel i).
            points = (points + 0.5) * (size / out.shape[-1])
        else:
            points = decode_regressor(out, crop_size=size)
            confidence = np.full(points.shape[:2], np.nan, dtype=np.float32)
        return [{"points": points[i], "confidence": confidence[i]} for i in range(len(crops))]
