"""``configs/models.yaml``: which models exist, what task each serves and where its weights come from.

Parsed strictly (unknown keys are errors): a misspelled key must fail the build, not silently
change what gets served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lensgraph.errors import InvalidRequest

Task = Literal["classification", "face_detection", "landmarks", "landmark_heatmaps", "digits", "detection", "generic"]

# Output names the serving code relies on, per task.
TASK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "classification": ("probabilities", "embedding"),
    "face_detection": ("scores", "boxes"),
    "landmarks": ("landmarks",),
    "landmark_heatmaps": ("heatmaps",),
    "digits": ("probabilities",),  # [samples, batch, 10] from the MC-dropout graph
    "detection": ("region",),  # darknet YOLOv2: raw [batch, num*(5+classes), H, W], decoded in Python
    "generic": ("output",),
}


class Normalization(BaseModel):
    """``(pixel - mean) / std`` per channel, in 0..255 pixel units, applied inside the graph."""

    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> "Normalization":
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError("mean and std need the same, non-zero number of values")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")
        return self


class ServingHints(BaseModel):
    """What the model's deployment starts with unless serve_config.yaml says otherwise: its batching
    (``user_config`` overrides it) and its replica's resources (``ray_actor_options`` overrides them)."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int | None = Field(None, ge=1, le=1024)
    batch_wait_timeout_s: float | None = Field(None, ge=0.0, le=1.0)
    num_cpus: float | None = Field(None, ge=0.0, le=256)
    num_gpus: float | None = Field(None, ge=0.0, le=16)


class ModelSpec(BaseModel):
    """One model: exactly one of ``architecture`` (ours), ``model_file`` (a user's class) or ``onnx``."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    task: Task
    version: int = Field(1, ge=1)
    description: str = ""
    architecture: str | None = None
    architecture_args: dict[str, Any] = Field(default_factory=dict)
    model_file: str | None = None
    class_name: str | None = None
    init_args: dict[str, Any] = Field(default_factory=dict)
    onnx: str | None = None
    weights: str | None = None
    sha256: str | None = None
    labels: str | None = None
    input_shape: list[int] | None = Field(None, description="C,H,W of one image (default: the architecture's)")
    input_normalization: Normalization | None = None
    bake_resize: bool = False
    resize: dict[str, Any] | None = Field(None, description=(
        "the resize the model was trained with: {library: pil|opencv, filter: bilinear|..., antialias: bool} "
        "(lensgraph.imaging.resize); default: the architecture's reference transform, OpenCV bilinear for ONNX"))
    weights_hint: str = Field("", description="how to obtain missing weights; shown when they are not found")
    weights_real: bool = Field(True, description=(
        "false for weights that are not a trained model (synthetic or test weights): the card, /v1/models and "
        "every answer then say weights_real: false; random:<seed> weights are never real"))
    outputs: list[str] | None = Field(None, description="output names (default: the task's)")
    options: dict[str, Any] = Field(default_factory=dict)
    serving: ServingHints = Field(default_factory=ServingHints, description=(
        "batching and resource defaults of the model's deployment (serve_config.yaml overrides them)"))

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        sources = [s for s in ("architecture", "model_file", "onnx") if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of architecture, model_file, onnx (got {sources or 'none'})")
        if self.model_file and not self.class_name:
            raise ValueError("model_file needs class_name")
        if (self.architecture or self.model_file) and not self.weights:
            raise ValueError("a torch model needs weights (a path, assets:..., a URL with sha256, or random:<seed>)")
        if self.onnx and self.weights:
            raise ValueError("an onnx model carries its weights; drop 'weights'")
        if self.onnx and not self.input_normalization:
            raise ValueError("an imported onnx model needs input_normalization (mean/std of its float input)")
        if self.resize is not None:
            from lensgraph.imaging.resize import ResizeSpec

            ResizeSpec.from_card(self.resize)  # raises ValueError with what is wrong
        if self.bake_resize and self.task != "classification":
            raise ValueError("bake_resize applies to classification models only")
        return self

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.outputs) if self.outputs else TASK_OUTPUTS[self.task]


class ModelsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, ModelSpec]


def load_models_config(path: Path) -> dict[str, ModelSpec]:
    try:
        raw = yaml.safe_load(path.read_text())
        config = ModelsConfig.model_validate(raw)
    except FileNotFoundError as exc:
        raise InvalidRequest(f"model config {path} does not exist") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidRequest(f"{path} is not a valid models config:\n{exc}") from exc
    specs = {}
    for name, spec in config.models.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise InvalidRequest(f"model name {name!r} may only hold letters, digits, '-' and '_'")
        update: dict[str, Any] = {"name": name}
        if spec.model_file and not Path(spec.model_file).expanduser().is_absolute():
            update["model_file"] = str((path.parent / spec.model_file).resolve())
        specs[name] = spec.model_copy(update=update)
    return specs
