"""What serving a task needs: its runner (lensgraph.inference), its live settings (``user_config``)
and how those settings reach the runner. The one model deployment (deployments/model.py) looks the
task up from the model's card, so a new model of a supported task is configuration, not Python.

Every task-specific setting defaults to ``None``: the card's ``options`` (written from
configs/models.yaml at build time) decide, and ``user_config`` overrides them live. Defaults are
therefore written in one place, the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from deployments.settings import ModelSettings
from lensgraph.inference.classifier import ClassifierRunner
from lensgraph.inference.detector import DetectorRunner
from lensgraph.inference.digits import MAX_SAMPLES, DigitRunner
from lensgraph.inference.face_detector import MAX_FACES_LIMIT, DetectionDefaults, FaceDetectorRunner
from lensgraph.inference.landmarks import LandmarkRunner
from lensgraph.inference.model_runner import ModelRunner


class FaceDetectorSettings(ModelSettings):
    """Face detection thresholds; unset: the card's ``options`` (score 0.7, IoU 0.3, 100 faces unless it says)."""

    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    iou_threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_faces: int | None = Field(None, ge=1, le=MAX_FACES_LIMIT, description="faces per photo when a request does not say")


class DigitSettings(ModelSettings):
    """MC-dropout settings; unset: the card's calibration."""

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


def _configure_faces(runner: FaceDetectorRunner, settings: FaceDetectorSettings) -> None:
    card = DetectionDefaults.from_card(runner.entry.card)
    runner.defaults = DetectionDefaults(
        card.score_threshold if settings.score_threshold is None else settings.score_threshold,
        card.iou_threshold if settings.iou_threshold is None else settings.iou_threshold,
        card.max_faces if settings.max_faces is None else settings.max_faces,
    )


def _configure_digits(runner: DigitRunner, settings: DigitSettings) -> None:
    runner.samples_override = settings.mc_samples
    runner.threshold_override = settings.reliability_threshold
    runner.energy_threshold = settings.energy_threshold if settings.energy_threshold is not None \
        else runner.card_energy_threshold
    runner.distance_threshold = settings.distance_threshold if settings.distance_threshold is not None \
        else runner.card_distance_threshold


def _nothing(runner: ModelRunner, settings: ModelSettings) -> None:
    """Tasks whose only settings are the session's and the batching's."""


@dataclass(frozen=True)
class TaskServing:
    runner: type[ModelRunner]
    settings: type[ModelSettings]
    configure: Callable[[Any, Any], None] = _nothing
    # The deployment method the ingress calls for this task (the others refuse: wrong task).
    method: str = "infer"


TASKS: dict[str, TaskServing] = {
    "classification": TaskServing(ClassifierRunner, ModelSettings, method="classify"),
    "face_detection": TaskServing(FaceDetectorRunner, FaceDetectorSettings, _configure_faces, method="detect"),
    "landmarks": TaskServing(LandmarkRunner, ModelSettings, method="predict_many"),
    "landmark_heatmaps": TaskServing(LandmarkRunner, ModelSettings, method="predict_many"),
    "digits": TaskServing(DigitRunner, DigitSettings, _configure_digits, method="predict"),
    "detection": TaskServing(DetectorRunner, ModelSettings, method="detect_objects"),
}


def serving_for(task: str | None) -> TaskServing:
    """The task's serving; a task lensgraph cannot serve is a clear error at replica start."""
    try:
        return TASKS[str(task)]
    except KeyError:
        raise ValueError(f"no serving for task {task!r}; served tasks are {sorted(TASKS)}") from None
