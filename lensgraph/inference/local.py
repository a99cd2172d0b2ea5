"""The three pipelines in one process, without Ray: decode, preprocess, ONNX Runtime, post-process.

What the benchmark measures as the *floor* (batched, nothing between the stages) and what the
single-process FastAPI baseline calls per request. Same runners and transforms as the served
graph, so the answers are the same; only the process boundaries and the batching differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lensgraph.imaging.decode import decode_image, to_gray
from lensgraph.imaging.digits import prepare_digit
from lensgraph.imaging.transforms import classifier_standard, detector_input
from lensgraph.inference.classifier import ClassifierRunner
from lensgraph.inference.digits import DigitRunner
from lensgraph.inference.face_detector import FaceDetectorRunner
from lensgraph.inference.face_graph import attach_landmarks, face_crops
from lensgraph.inference.landmarks import LandmarkRunner
from lensgraph.repository.store import find_model
from lensgraph.runtime.session import SessionConfig

LANDMARK_SIZE = 96
DETECTOR_SIZE = (320, 240)


class LocalPipelines:
    """Loads the models of the ``pipelines`` asked for; ``threads`` is ONNX Runtime's intra-op count."""

    def __init__(self, repository: Path, threads: int = 2, pipelines: Sequence[str] = ("classify", "faces", "digits")):
        config = SessionConfig(intra_op_threads=threads)
        self.classifier_runner = ClassifierRunner(find_model(repository, "classifier"), config) if "classify" in pipelines else None
        if "faces" in pipelines:
            self.detector = FaceDetectorRunner(find_model(repository, "face_detector"), config)
            self.landmarks = LandmarkRunner(find_model(repository, "landmarks"), config)
        self.digit_runner = DigitRunner(find_model(repository, "digits"), config) if "digits" in pipelines else None

    # -- classify ------------------------------------------------------------------------------
    def classify_inputs(self, data: bytes) -> np.ndarray:
        return classifier_standard(decode_image(data).pixels)

    def classify(self, images: Sequence[bytes], top_k: int = 2) -> list[dict[str, Any]]:
        batch = [(self.classify_inputs(data), top_k, False) for data in images]
        return self.classifier_runner.run_batch(batch)

    # -- digits --------------------------------------------------------------------------------
    def digits(self, images: Sequence[bytes], samples: int | None = None, seed: int | None = None) -> list[dict[str, Any]]:
        prepared = [prepare_digit(decode_image(data)) for data in images]
        todo = [(p.image, samples, seed) for p in prepared if not p.blank]
        answers = iter(self.digit_runner.run_batch(todo) if todo else [])
        out = []
        for p in prepared:
            base = {"blank": p.blank, "inverted": p.inverted}
            out.append({**base, "digit": None, "probability": 0.0, "reliable": False} if p.blank
                       else {**base, **next(answers)})
        return out

    # -- faces ---------------------------------------------------------------------------------
    def faces(self, images: Sequence[bytes]) -> list[dict[str, Any]]:
        """Model A on the whole batch, then model B on every face crop of every image at once."""
        decoded = [decode_image(data).pixels for data in images]
        items = [(detector_input(px, DETECTOR_SIZE), px.shape[1], px.shape[0], None, None) for px in decoded]
        detections = self.detector.run_batch(items)
        crops, owners = [], []
        for i, (px, faces) in enumerate(zip(decoded, detections)):
            if faces:
                cut = face_crops(to_gray(px), faces, LANDMARK_SIZE)
                crops.extend(cut)
                owners.extend([i] * len(cut))
        results = self.landmarks.run_batch([crop[..., None] for crop, _ in crops]) if crops else []
        for i, faces in enumerate(detections):
            mine = [k for k, owner in enumerate(owners) if owner == i]
            attach_landmarks(faces, [crops[k][1] for k in mine], [results[k] for k in mine], LANDMARK_SIZE)
        return [{"width": px.shape[1], "height": px.shape[0], "faces": faces} for px, faces in zip(decoded, detections)]
