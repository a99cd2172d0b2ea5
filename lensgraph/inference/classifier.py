"""ImageNet classifier runner: top-k classes with softmax confidence and the embedding's statistics.

Softmax and normalisation run inside the ONNX graph; this only turns its two outputs
(probabilities, embedding) into one answer per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.classification import embedding_stats, load_labels, top_k
from lensgraph.repository.store import ModelEntry
from lensgraph.runtime.session import SessionConfig


class ClassifierRunner(ModelRunner):
    """Items: (uint8 224x224x3 RGB crop, k, with_embedding)."""

    def __init__(self, entry: ModelEntry, session_config: SessionConfig = SessionConfig()) -> None:
        super().__init__(entry, session_config)
        labels = entry.labels_path
        self.labels = load_labels(labels) if labels else None

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
