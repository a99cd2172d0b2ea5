"""Application builder: wires the deployments into one graph for ``serve run serve_config.yaml``.

The root is the Preprocessor, the HTTP ingress that decodes and prepares each upload; it holds a
handle to every model deployment and calls each directly (one hop per model). Every deployment is
always part of the graph (serve_config.yaml configures each by name). A model missing from the
repository starts its deployment without a session: its routes answer 503 with the reason and
/v1/models lists it as unavailable, so one missing model never takes the others down.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from deployments.classifier import Classifier
from deployments.digit_classifier import DigitClassifier
from deployments.face_detector import FaceDetector
from deployments.landmark_model import LandmarkModel
from lensgraph import settings
from pipelines.ingress import Preprocessor

DEPLOYMENTS = {
    "classifier": Classifier,
    "face_detector": FaceDetector,
    "landmarks": LandmarkModel,
    "digits": DigitClassifier,
}


class AppArgs(BaseModel):
    """``args`` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    repository: str | None = Field(None, description="model repository (default $LENSGRAPH_MODEL_REPOSITORY)")
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    models: dict[str, str] = Field(
        default_factory=lambda: {role: role for role in DEPLOYMENTS},
        description="role -> model name in the repository (e.g. classifier: resnet18)",
    )


def build_app(args: dict | None = None) -> Application:
    parsed = AppArgs.model_validate(args or {})
    unknown = set(parsed.models) - set(DEPLOYMENTS)
    if unknown:
        raise ValueError(f"unknown model roles {sorted(unknown)}; roles are {sorted(DEPLOYMENTS)}")
    root = str(settings.model_repository_dir(parsed.repository))
    names = {role: parsed.models.get(role, role) for role in DEPLOYMENTS}
    bound = {role: DEPLOYMENTS[role].bind(names[role], root) for role in DEPLOYMENTS}
    return Preprocessor.bind(bound, parsed.max_upload_bytes)


app = build_app
