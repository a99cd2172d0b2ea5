"""The MNIST digit classifier with Monte-Carlo dropout: a digit and whether the model trusts it.

One server batch of N requests becomes ONE ONNX Runtime call: the graph runs the convolutional
trunk once per image and the dropout head for all T samples of all N images as one batched
matrix product (lensgraph.export.mc_dropout). The dropout masks are made here, per request: from
the request's ``seed`` when it gives one (the answer is then reproducible, whatever else shares
its batch), else from the replica's generator, seeded once from OS entropy. Requests asking for different T share the call at the
largest T; each reads only its own first T samples.

``reliable`` compares the model card's uncertainty score (chosen and calibrated on held-out data
by ``lensgraph train digits``) with the threshold calibrated for the request's T; see
docs/uncertainty.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from deployments.model_base import BatchedModel, ModelSettings
from lensgraph.uncertainty.calibration import threshold_for_samples
from lensgraph.uncertainty.mc_dropout import make_masks, summarize

MAX_SAMPLES = 200
DEFAULT_SAMPLES = 30


class DigitSettings(ModelSettings):
    """``user_config`` of DigitClassifier: the batching fields plus MC-dropout settings."""

    mc_samples: int | None = Field(
        None, ge=1, le=MAX_SAMPLES, description="T when a request does not say (default: the model card's, 30)"
    )
    reliability_threshold: float | None = Field(
        None, ge=0.0, description="override the calibrated threshold on the card's score, for every T"
    )


@serve.deployment(name="DigitClassifier", max_ongoing_requests=64)
class DigitClassifier(BatchedModel):
    settings_class = DigitSettings

    def __init__(self, model_name: str = "digits", repository: str | None = None, version: int | None = None):
        super().__init__(model_name, repository, version)
        options = (self.entry.card.get("options") or {}) if self.entry else {}
        self.dropout_p = float(options.get("dropout_p", 0.5))
        self.card_samples = int(options.get("mc_samples") or DEFAULT_SAMPLES)
        self.score = options.get("uncertainty_score")
        self.thresholds = {int(k): v for k, v in (options.get("thresholds") or {}).items()}
        self.target_accuracy = options.get("target_accuracy")
        self._sizes: tuple[int, int] | None = None
        self._rng = np.random.default_rng()  # requests without a seed: fresh OS entropy once, then this stream

    # -- API -------------------------------------------------------------------------------------
    async def predict(self, image: np.ndarray, samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """``image``: uint8 28x28, light ink on black (lensgraph.imaging.digits). ``samples``: T (1..200)."""
        if samples is not None and not 1 <= int(samples) <= MAX_SAMPLES:
            raise ValueError(f"samples must be in 1..{MAX_SAMPLES}")
        return await self.infer((image, samples, seed))

    @property
    def default_samples(self) -> int:
        return int(self.settings.mc_samples or self.card_samples)

    def threshold(self, samples: int) -> float | None:
        if self.settings.reliability_threshold is not None:
            return float(self.settings.reliability_threshold)
        return threshold_for_samples(self.thresholds, samples)

    # -- one session call per server batch -------------------------------------------------------
    def _mask_sizes(self) -> tuple[int, int]:
        if self._sizes is None:
            shapes = {i.name: i.shape for i in self.session.get_inputs()}
            self._sizes = (int(shapes["mask1"][-1]), int(shapes["mask2"][-1]))
        return self._sizes

    def run_session(self, batch: np.ndarray, mask1: np.ndarray | None = None, mask2: np.ndarray | None = None):
        """Without masks: the deterministic pass (T=1, all-ones masks), as the health check uses."""
        if mask1 is None or mask2 is None:
            f, h = self._mask_sizes()
            mask1 = np.ones((1, len(batch), f), np.float32)
            mask2 = np.ones((1, len(batch), h), np.float32)
        return self.session.run(None, {self._input_name: batch, "mask1": mask1, "mask2": mask2})

    def run_batch(self, items: list[tuple[np.ndarray, int | None, int | None]]) -> list[dict[str, Any]]:
        f, h = self._mask_sizes()
        counts = [int(samples or self.default_samples) for _, samples, _ in items]
        t_max, n = max(counts), len(items)
        mask1 = np.ones((t_max, n, f), np.float32)
        mask2 = np.ones((t_max, n, h), np.float32)
        for i, ((_, _, seed), t) in enumerate(zip(items, counts)):
            rng = self._rng if seed is None else np.random.default_rng(seed)
            m1, m2 = make_masks(t, 1, (f, h), self.dropout_p, rng)
            mask1[:t, i], mask2[:t, i] = m1[:, 0], m2[:, 0]
        images = np.stack([image for image, _, _ in items])[..., None]
        (probs,) = self.run_session(images, mask1, mask2)  # [t_max, n, 10]
        return [self._answer(probs[:t, i : i + 1], t) for i, t in enumerate(counts)]

    def _answer(self, probs: np.ndarray, samples: int) -> dict[str, Any]:
        summary = summarize(probs)
        threshold = self.threshold(samples)
        score = float(summary.score(self.score)[0]) if self.score else None
        reliable = bool(threshold is not None and score is not None and score <= threshold)
        return {
            "digit": int(summary.prediction[0]),
            "probability": float(summary.probability[0]),
            "probabilities": summary.mean[0].astype(float).tolist(),
            "reliable": reliable,
            "uncertainty": {
                **summary.row(0),
                "samples": samples,
                "score": self.score,
                "threshold": threshold,
            },
        }

    def info(self) -> dict[str, Any]:
        info = super().info()
        if self.entry is not None:
            info["uncertainty"] = {
                "method": "Monte-Carlo dropout, trunk once per image, head T times in one batched call",
                "default_samples": self.default_samples,
                "max_samples": MAX_SAMPLES,
                "dropout_p": self.dropout_p,
                "score": self.score,
                "threshold_at_default_samples": self.threshold(self.default_samples),
                "threshold_overridden": self.settings.reliability_threshold is not None,
                "target_accuracy": self.target_accuracy,
                "calibrated": bool(self.thresholds),
            }
        return info
