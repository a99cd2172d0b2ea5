"""The MNIST digit classifier. Batches 28x28 inputs; the uncertainty issue adds MC dropout."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.postprocess.classification import softmax


@serve.deployment(name="DigitClassifier", max_ongoing_requests=64)
class DigitClassifier(BatchedModel):
    def __init__(self, model_name: str = "digits", repository: str | None = None, version: int | None = None):
        super().__init__(model_name, repository, version)

    async def predict(self, image: np.ndarray) -> dict[str, Any]:
        """``image``: uint8 28x28, light ink on black (see lensgraph.imaging.digits)."""
        return await self.infer(image)

    def run_batch(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        (logits,) = self.run_session(np.stack(items)[..., None])
        probs = softmax(logits)
        return [
            {"digit": int(p.argmax()), "probability": float(p.max()), "probabilities": p.astype(float).tolist()}
            for p in probs
        ]
