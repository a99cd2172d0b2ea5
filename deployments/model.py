"""The one model deployment: any model of the repository, deployed once per served model.

``Model.options(name=...).bind(model_name, repository, version)`` (pipelines/app.py) gives each
served model its own deployment, replicas, resources and ``user_config``; the card's task picks the
runner and the settings (deployments/tasks.py). The methods are the ingress's calls, one per task;
calling one a model's task does not serve is an error, never a wrong answer. ``infer_tensors`` serves
every task: the model's card tensors as its graph takes them (the Open Inference Protocol, /v2).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from ray import serve

from deployments.model_base import BatchedModel
from lensgraph.inference.digits import MAX_SAMPLES
from lensgraph.protocol import v2 as protocol_v2


@serve.deployment(name="Model", max_ongoing_requests=64)
class Model(BatchedModel):
    def _expect(self, method: str) -> None:
        entry = self.require_model()
        if self.serving.method != method:
            raise ValueError(f"model {entry.name!r} serves task {entry.card.get('task')!r}; it has no {method}()")

    async def classify(self, image: np.ndarray, k: int = 2, with_embedding: bool = False) -> dict[str, Any]:
        """``image``: uint8 crop at the model's input size (lensgraph.routes.classify.prepare)."""
        self._expect("classify")
        return await self.infer((image, k, with_embedding))

    async def detect(self, views: np.ndarray, regions: tuple, width: int, height: int,
                     score_threshold: float | None = None, iou_threshold: float | None = None,
                     max_faces: int | None = None, tile_score_threshold: float | None = None) -> list[dict[str, float]]:
        """``views``: uint8 [V, H, W, 3] at the model's input size, ``regions`` the V ``tiling.View``s
        they show; width/height: the original photo's (lensgraph.routes.faces.detector_item)."""
        self._expect("detect")
        return await self.infer((views, regions, width, height, score_threshold, iou_threshold, max_faces,
                                 tile_score_threshold))

    async def detect_objects(self, image: np.ndarray, mapping: Any, limits: Any) -> dict[str, Any]:
        """Object detection: ``image`` letterboxed to the model's input (lensgraph.routes.detect.prepare),
        its mapping back to the photo and the request's thresholds: the /v1/detect answer."""
        self._expect("detect_objects")
        return await self.infer((image, mapping, limits))

    async def predict_many(self, crops: np.ndarray) -> list[dict[str, np.ndarray]]:
        """``crops``: uint8 [k, S, S, 1], every face of one request: k results (points, confidence)."""
        self._expect("predict_many")
        if crops.ndim != 4 or len(crops) == 0:
            raise ValueError(f"crops must be a non-empty [k, S, S, 1] stack, got shape {crops.shape}")
        return await self.infer(crops)

    async def predict(self, image: np.ndarray, samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """Digits: ``image`` uint8 28x28, light ink on black (lensgraph.imaging.digits); ``samples``: T."""
        self._expect("predict")
        if samples is not None and not 1 <= int(samples) <= MAX_SAMPLES:
            raise ValueError(f"samples must be in 1..{MAX_SAMPLES}")
        return await self.infer((image, samples, seed))

    async def infer_tensors(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None,
                            served_name: str | None = None) -> tuple[int, dict[str, np.ndarray]]:
        """The Open Inference Protocol's infer: ``inputs`` are the card's tensors with N rows, already checked
        by the ingress (lensgraph.protocol.v2.parse_request) and checked again here against the version
        served now, with N against the live ``max_batch_size``. Each row is one item of the row batch
        queue, so one session call serves the rows of many requests. Returns (the version that
        answered, the requested ``outputs`` (default: all), N rows each)."""
        self.require_model()
        signature = self.protocol_signature()
        rows = signature.check_arrays(inputs)
        protocol_v2.check_batch(rows, self.settings.max_batch_size, served_name or self.model_name)
        wanted = list(outputs) if outputs else signature.output_names()
        unknown = set(wanted) - set(signature.output_names())
        if unknown:
            raise protocol_v2.ProtocolError(f"unknown output {sorted(unknown)}; the model answers "
                                            f"{signature.output_names()}")
        arrived = time.perf_counter_ns()
        self.in_flight += rows
        try:
            answers = await asyncio.gather(*(self._infer_rows((row, arrived, i == rows - 1))
                                             for i, row in enumerate(protocol_v2.split_rows(inputs, rows))))
        finally:
            self.in_flight -= rows
        return answers[-1][0], protocol_v2.join_rows([result for _, result in answers], wanted)

    def info(self) -> dict[str, Any]:
        info = super().info()
        describe = getattr(self.runner, "describe", None)
        if describe is not None:
            info["uncertainty"] = describe()
        return info
