"""The ImageNet classifier deployment: batches uint8 224x224 crops into ClassifierRunner."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.inference.classifier import ClassifierRunner


@serve.deployment(name="Classifier", max_ongoing_requests=64)
class Classifier(BatchedModel):
    runner_class = ClassifierRunner

    def __init__(self, model_name: str = "classifier", repository: str | None = None, version: int | None = None):
        super().__init__(model_name, repository, version)

    async def classify(self, image: np.ndarray, k: int = 2, with_embedding: bool = False) -> dict[str, Any]:
        """``image``: uint8 224x224x3 RGB (already resized/cropped by the preprocessor)."""
        return await self.infer((image, k, with_embedding))
