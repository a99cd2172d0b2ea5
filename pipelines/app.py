"""Application builder: wires the deployments into one graph for ``serve run serve_config.yaml``.

The root is the Preprocessor, the HTTP ingress that decodes and prepares each upload; it holds a
handle to every served model's deployment and calls each directly (one hop per model). Every
served model is its own deployment of the one model class (deployments/model.py), named in
``args.models``; serve_config.yaml configures each deployment by that name. A model missing from
the repository starts its deployment without a session: its routes answer 503 with the reason and
/v1/models lists it as unavailable, so one missing model never takes the others down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from deployments.model import Model
from lensgraph import settings
from lensgraph.errors import ModelUnavailable
from lensgraph.repository.store import find_model
from lensgraph.serving_plan import ServedModel, served_models
from pipelines.ingress import Preprocessor


class AppArgs(BaseModel):
    """``args`` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    repository: str | None = Field(None, description="model repository (default $LENSGRAPH_MODEL_REPOSITORY)")
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    models: dict[str, ServedModel | str | None] = Field(default_factory=dict, description=(
        "served name -> {model, deployment, default}, merged over the four built-in models "
        "(classifier, face_detector, landmarks, digits); a string is the repository model to serve under that "
        "name (e.g. digits: mnist_model); null removes a built-in (docs/models.md)"))

    def served(self) -> dict[str, ServedModel]:
        return served_models(self.models)


DEFAULT_ACTOR_OPTIONS = {"num_cpus": 0.25}


def actor_options(root: str, model: str) -> dict[str, float]:
    """A replica's resources when serve_config.yaml gives none: the card's ``serving`` hints, else a quarter
    CPU (Ray's own default, one CPU per replica, would not fit a few models on a small node)."""
    try:
        hints = find_model(Path(root), model).card.get("serving") or {}
    except ModelUnavailable:
        hints = {}
    chosen = {k: float(hints[k]) for k in ("num_cpus", "num_gpus") if k in hints}
    return chosen if "num_cpus" in chosen else {**DEFAULT_ACTOR_OPTIONS, **chosen}


def build_app(args: dict | None = None) -> Application:
    parsed = AppArgs.model_validate(args or {})
    root = str(settings.model_repository_dir(parsed.repository))
    served = parsed.served()
    bound = {name: Model.options(name=s.deployment, ray_actor_options=actor_options(root, s.model))
             .bind(s.model, root) for name, s in served.items()}
    return Preprocessor.bind(bound, parsed.max_upload_bytes, {name: s.default for name, s in served.items()})


app = build_app
