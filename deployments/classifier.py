"""The ImageNet classifier: top-k classes with softmax confidence, and the embedding's statistics.

Softmax and normalisation run inside the ONNX graph; this deployment only batches uint8 crops and
turns the two outputs into a per-image answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.postprocess.classification import embedding_stats, load_labels, top_k


@serve.deployment(name="Classifier", max_ongoing_requests=64)
class Classifier(BatchedModel):
    def __init__(self, model_name: str = "classifier", repository: str | None = None, version: int | None = None):
        super().__init__(model_name, repository, version)
        labels = self.entry.labels_path if self.entry else None
        self.labels = load_labels(labels) if labels else None

    async def classify(self, image: np.ndarray, k: int = 2, with_embedding: bool = False) -> dict[str, Any]:
        """``image``: uint8 224x224x3 RGB (already resized/cropped by the preprocessor)."""
        return await self.infer((image, k, with_embedding))

    def run_batch(self, items: list[tuple[np.ndarray, int, bool]]) -> list[dict[str, Any]]:
        probs, embedding = self.run_session(np.stack([item[0] for item in items]))
        means, variances = embedding_stats(embedding)
        results = []
        for i, (_, k, with_embedding) in enumerate(items):
            indices, values = top_k(probs[i : i + 1], k)
            predictions = [
                {"class_id": int(c), "label": self.labels[c] if self.labels else str(int(c)), "confidence": float(p)}
                for c, p in zip(indices[0], values[0])
            ]
            result = {
                "predictions": predictions,
                "embedding_stats": {"dim": int(embedding.shape[1]), "mean": float(means[i]), "variance": float(variances[i])},
            }
            if with_embedding:
                result["embedding"] = embedding[i].astype(np.float32).tolist()
            results.append(result)
        return results
