"""The MNIST digit deployment with Monte-Carlo dropout: one server batch of N requests becomes
ONE ONNX Runtime call through DigitRunner (lensgraph.inference.digits, docs/uncertainty.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from deployments.model_base import BatchedModel, ModelSettings
from lensgraph.inference.digits import MAX_SAMPLES, DigitRunner


class DigitSettings(ModelSettings):
    """``user_config`` of DigitClassifier: the batching fields plus MC-dropout settings."""

    mc_samples: int | None = Field(
        None, ge=1, le=MAX_SAMPLES, description="T when a request does not say (default: the model card's, 30)"
    )
    reliability_threshold: float | None = Field(
        None, ge=0.0, description="override the calibrated threshold on the card's score, for every T"
    )
    energy_threshold: float | None = Field(
        None, description="override the calibrated energy threshold (higher lets more unfamiliar inputs through)"
    )
    distance_threshold: float | None = Field(
        None, ge=0.0, le=2.0,
        description="override the calibrated distance threshold (higher lets more unfamiliar inputs through)"
    )


@serve.deployment(name="DigitClassifier", max_ongoing_requests=64)
class DigitClassifier(BatchedModel):
    settings_class = DigitSettings
    runner_class = DigitRunner

    def __init__(self, model_name: str = "digits", repository: str | None = None, version: int | None = None):
        super().__init__(model_name, repository, version)

    def configure_runner(self, runner: DigitRunner, settings: DigitSettings) -> None:
        runner.samples_override = settings.mc_samples
        runner.threshold_override = settings.reliability_threshold
        runner.energy_threshold = settings.energy_threshold if settings.energy_threshold is not None \
            else runner.card_energy_threshold
        runner.distance_threshold = settings.distance_threshold if settings.distance_threshold is not None \
            else runner.card_distance_threshold

    async def predict(self, image: np.ndarray, samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """``image``: uint8 28x28, light ink on black (lensgraph.imaging.digits). ``samples``: T (1..200)."""
        if samples is not None and not 1 <= int(samples) <= MAX_SAMPLES:
            raise ValueError(f"samples must be in 1..{MAX_SAMPLES}")
        return await self.infer((image, samples, seed))

    def info(self) -> dict[str, Any]:
        info = super().info()
        if self.runner is not None:
            info["uncertainty"] = self.runner.describe()
        return info
