"""Model A runner: UltraFace on every view of every photo of a batch in one call, merged into one box per face.

A photo reaches the detector as views (lensgraph.imaging.tiling: the whole photo letterboxed, plus
overlapping tiles when it is large). Every view of every item of a server batch goes through ONE
ONNX Runtime call; each view's boxes are decoded, mapped back to the photo and merged
(lensgraph.postprocess.detection.merge_views).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.postprocess.detection import decode_ultraface, merge_views
from lensgraph.repository.store import ModelEntry
from lensgraph.runtime.session import SessionConfig

MAX_FACES_LIMIT = 1000


@dataclass
class DetectionDefaults:
    """What a request that does not say gets; the card's ``options`` set them (configs/models.yaml)."""

    score_threshold: float = 0.7
    iou_threshold: float = 0.3
    max_faces: int = 100

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "DetectionDefaults":
        options = card.get("options") or {}
        return cls(float(options.get("score_threshold", cls.score_threshold)),
                   float(options.get("iou_threshold", cls.iou_threshold)),
                   int(options.get("max_faces", cls.max_faces)))


class FaceDetectorRunner(ModelRunner):
    """Items: (uint8 [V, H, W, 3] views at the model's input size, the V ``tiling.View``s, original
    width, original height, score_threshold, iou_threshold, max_faces, tile_score_threshold); None
    takes ``self.defaults``; a tile's faces need a score above both thresholds."""

    def __init__(self, entry: ModelEntry, session_config: SessionConfig = SessionConfig()) -> None:
        super().__init__(entry, session_config)
        self.defaults = DetectionDefaults.from_card(entry.card)  # the deployment's user_config may override

    def run_batch(self, items: list[tuple[Any, ...]]) -> list[list[dict[str, float]]]:
        counts = [len(item[0]) for item in items]
        scores, boxes = self.run_session(np.concatenate([item[0] for item in items]))
        d = self.defaults
        out, start = [], 0
        for count, (inputs, views, width, height, score, iou, max_faces, tile_score) in zip(counts, items):
            score = d.score_threshold if score is None else score
            iou = d.iou_threshold if iou is None else iou
            limit = d.max_faces if max_faces is None else max_faces
            in_h, in_w = inputs.shape[1:3]
            per_view = [decode_ultraface(scores[start + v], boxes[start + v], in_w, in_h, score_threshold=score,
                                         iou_threshold=iou, max_faces=MAX_FACES_LIMIT) for v in range(count)]
            start += count
            merged = merge_views(per_view, views, width, height, iou, limit, tile_score_threshold=tile_score or 0.0)
            out.append([face.to_dict() for face in merged])
        return out
