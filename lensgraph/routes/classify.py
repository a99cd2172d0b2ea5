"""``POST /v1/classify``: the classifier's 224x224 crop from a photo, and the answer around its top-k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.resize import ResizeSpec
from lensgraph.imaging.transforms import classifier_standard, zoom_crop_pad
from lensgraph.routes import input_hw, model_ref

PROFILES = ("standard", "zoom-crop-pad")


@dataclass(frozen=True)
class ClassifyGeometry:
    """The card's ``preprocessing.before_graph``: shorter side to ``resize_shorter`` with the card's
    ``resize`` (library, filter, antialiasing: lensgraph.imaging.resize), centre ``crop``."""

    resize_shorter: int
    crop: int
    classes: int
    resize: ResizeSpec = ResizeSpec()

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "ClassifyGeometry":
        crop, _ = input_hw(card)
        before = (card.get("preprocessing") or {}).get("before_graph") or {}
        classes = int(card["outputs"][0]["shape"][-1])
        return cls(resize_shorter=int(before.get("resize_shorter", round(crop * 256 / 224))), crop=crop, classes=classes,
                   resize=ResizeSpec.from_card(before.get("resize")))


def check(geometry: ClassifyGeometry, top_k: int, profile: str) -> None:
    """Refuse what cannot be answered before anything is decoded (422)."""
    if profile not in PROFILES:
        raise InvalidRequest(f"unknown preprocessing profile {profile!r}; use one of {list(PROFILES)}")
    if top_k > geometry.classes:
        raise InvalidRequest(f"top_k={top_k} is more than the model's {geometry.classes} classes")


def prepare(pixels: np.ndarray, geometry: ClassifyGeometry, profile: str = "standard", seed: int | None = None
            ) -> np.ndarray:
    """HxWx3 uint8 RGB -> the model's crop (uint8, crop x crop x 3)."""
    if profile == "standard":
        return classifier_standard(pixels, geometry.resize_shorter, geometry.crop, geometry.resize)
    return zoom_crop_pad(pixels, out_size=geometry.crop, rng=np.random.default_rng(seed))


def answer(card: dict[str, Any], profile: str, result: dict[str, Any]) -> dict[str, Any]:
    """The ClassifierRunner's result (predictions, embedding_stats[, embedding]) as the API's answer."""
    return {"model": model_ref(card), "preprocessing": profile, "predictions": result["predictions"],
            "embedding_stats": result["embedding_stats"], "embedding": result.get("embedding")}
