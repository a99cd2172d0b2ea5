"""The three pipelines in one process, without Ray: decode, the route's preprocessing, ONNX Runtime,
the route's answer.

What the benchmark measures as the *floor* (batched, nothing between the stages) and what the
single-process FastAPI baseline calls per request. Same route modules (lensgraph.routes) and
runners as the served graph, so the answers are the same; only process boundaries and batching differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lensgraph.imaging.decode import decode_image
from lensgraph.inference.classifier import ClassifierRunner
from lensgraph.inference.digits import DigitRunner
from lensgraph.inference.face_detector import FaceDetectorRunner
from lensgraph.inference.landmarks import LandmarkRunner
from lensgraph.repository.store import find_model
from lensgraph.routes import classify, digits, faces
from lensgraph.runtime.session import SessionConfig


class LocalPipelines:
    """Loads the models of the ``pipelines`` asked for; ``threads`` is ONNX Runtime's intra-op count."""

    def __init__(self, repository: Path, threads: int = 2, pipelines: Sequence[str] = ("classify", "faces", "digits")):
        config = SessionConfig(intra_op_threads=threads)
        if "classify" in pipelines:
            self.classifier = ClassifierRunner(find_model(repository, "classifier"), config)
            self.classify_geometry = classify.ClassifyGeometry.from_card(self.classifier.entry.card)
        if "faces" in pipelines:
            self.detector = FaceDetectorRunner(find_model(repository, "face_detector"), config)
            self.landmarks = LandmarkRunner(find_model(repository, "landmarks"), config)
            self.face_geometry = faces.FaceGeometry.from_cards(self.detector.entry.card, self.landmarks.entry.card)
        if "digits" in pipelines:
            self.digit_runner = DigitRunner(find_model(repository, "digits"), config)

    def classify(self, images: Sequence[bytes], top_k: int = 2) -> list[dict[str, Any]]:
        g = self.classify_geometry
        batch = [(classify.prepare(decode_image(data).pixels, g), top_k, False) for data in images]
        card = self.classifier.entry.card
        return [classify.answer(card, "standard", r) for r in self.classifier.run_batch(batch)]

    def digits(self, images: Sequence[bytes], samples: int | None = None, seed: int | None = None) -> list[dict[str, Any]]:
        prepared = [digits.prepare(decode_image(data)) for data in images]
        todo = [(p.image, samples, seed) for p in prepared if not p.blank]
        results = iter(self.digit_runner.run_batch(todo) if todo else [])
        card = self.digit_runner.entry.card
        return [digits.answer(card, p, None if p.blank else next(results)) for p in prepared]

    def faces(self, images: Sequence[bytes]) -> list[dict[str, Any]]:
        """Model A on the whole batch, then model B on every face crop of every image at once."""
        g = self.face_geometry
        decoded = [decode_image(data).pixels for data in images]
        plans = [faces.photo_plan(px.shape[1], px.shape[0], g) for px in decoded]
        detections = self.detector.run_batch([faces.detector_item(px, g, plan=p) for px, p in zip(decoded, plans)])
        cuts = [faces.crops(px, found, g) for px, found in zip(decoded, detections)]
        flat = [crop for cut in cuts for crop, _ in cut]
        results = iter(self.landmarks.run_batch(flat) if flat else [])
        cards = self.detector.entry.card, self.landmarks.entry.card
        return [faces.answer(*cards, px.shape[1], px.shape[0], found, cut, [next(results) for _ in cut], g, plan=p)
                for px, found, cut, p in zip(decoded, detections, cuts, plans)]
