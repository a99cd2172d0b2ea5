"""The preprocessing stage: decode uploads once, produce the uint8 tensor each model needs.

For the face graph it is also the stage that owns the decoded image: it sends the 320x240
detector input to model A, cuts one 96x96 crop per face where the pixels already are, and sends
the crops to model B. Only small uint8 tensors cross process boundaries (230 KB and 9 KB), never
the decoded photo, and crops from all in-flight requests meet in model B's batches.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.decode import DecodedImage, ImageLimits, decode_image, to_gray
from lensgraph.imaging.digits import prepare_digit
from lensgraph.imaging.transforms import (
    classifier_standard,
    detector_input,
    square_face_crop,
    zoom_crop_pad,
)
from lensgraph.inference.face_graph import attach_landmarks, face_crops

CLASSIFIER_PROFILES = ("standard", "zoom-crop-pad")


class PreprocessorSettings(BaseModel):
    """``user_config`` of the Preprocessor."""

    model_config = ConfigDict(extra="forbid")
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024)
    detector_size: tuple[int, int] = (320, 240)
    classifier_resize_shorter: int = Field(256, ge=32)
    classifier_crop: int = Field(224, ge=32)
    face_crop_scale: float = Field(1.0, gt=0.5, le=2.0)
    landmark_size: int = Field(96, ge=16)
    threads: int | None = Field(None, ge=1, le=64, description="decode threads (default: num_cpus)")


@serve.deployment(name="Preprocessor", max_ongoing_requests=64)
class Preprocessor:
    def __init__(self, face_detector: DeploymentHandle | None = None, landmarks: DeploymentHandle | None = None):
        self.face_detector = face_detector
        self.landmarks = landmarks
        self.settings = PreprocessorSettings()
        self._pool = self._make_pool()

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        new = PreprocessorSettings.model_validate(user_config or {})
        if new.threads != self.settings.threads:
            self._pool = self._make_pool(new.threads)
        self.settings = new

    def _make_pool(self, threads: int | None = None) -> ThreadPoolExecutor:
        workers = threads or max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    async def _off_loop(self, fn, *args):
        """Decoding is CPU work: run it on the pool so the replica keeps accepting requests."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _decode(self, data: bytes) -> DecodedImage:
        s = self.settings
        return decode_image(data, ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_pixels))

    # -- classifier ----------------------------------------------------------------------------
    async def classifier_input(self, data: bytes, profile: str = "standard", seed: int | None = None) -> np.ndarray:
        if profile not in CLASSIFIER_PROFILES:
            raise InvalidRequest(f"unknown preprocessing profile {profile!r}; use one of {list(CLASSIFIER_PROFILES)}")
        return await self._off_loop(self._classifier_input, data, profile, seed)

    def _classifier_input(self, data: bytes, profile: str, seed: int | None) -> np.ndarray:
        rgb = self._decode(data).pixels
        s = self.settings
        if profile == "standard":
            return classifier_standard(rgb, s.classifier_resize_shorter, s.classifier_crop)
        return zoom_crop_pad(rgb, out_size=s.classifier_crop, rng=np.random.default_rng(seed))

    # -- digits --------------------------------------------------------------------------------
    async def digits_input(self, data: bytes) -> dict[str, Any]:
        return await self._off_loop(lambda: prepare_digit(self._decode(data)).to_dict())

    # -- a face crop straight into model B ------------------------------------------------------
    async def landmark_input(self, data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
        return await self._off_loop(self._landmark_input, data)

    def _landmark_input(self, data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
        image = self._decode(data)
        h, w = image.pixels.shape[:2]
        crop, box = square_face_crop(to_gray(image.pixels), (0.0, 0.0, float(w), float(h)), self.settings.landmark_size)
        return crop[..., None], {"width": w, "height": h, "x0": box.x0, "y0": box.y0, "side": box.side}

    # -- the face graph ------------------------------------------------------------------------
    async def faces(self, data: bytes, score_threshold: float | None = None, iou_threshold: float | None = None,
                    with_landmarks: bool = True) -> dict[str, Any]:
        if self.face_detector is None or self.landmarks is None:
            raise RuntimeError("Preprocessor was built without the face models")
        image, det_in = await self._off_loop(self._face_inputs, data)
        h, w = image.pixels.shape[:2]
        faces = await self.face_detector.detect.remote(det_in, w, h, score_threshold, iou_threshold)
        if with_landmarks and faces:
            s = self.settings
            crops = await self._off_loop(face_crops, to_gray(image.pixels), faces, s.landmark_size, s.face_crop_scale)
            results = await asyncio.gather(*(self.landmarks.predict.remote(crop[..., None]) for crop, _ in crops))
            attach_landmarks(faces, [box for _, box in crops], results, s.landmark_size)
        return {"width": w, "height": h, "faces": faces}

    def _face_inputs(self, data: bytes) -> tuple[DecodedImage, np.ndarray]:
        image = self._decode(data)
        return image, detector_input(image.pixels, tuple(self.settings.detector_size))
