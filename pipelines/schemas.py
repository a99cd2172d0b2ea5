"""Typed HTTP responses: what every route promises, and what OpenAPI at /docs shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable error code")
    message: str = Field(description="what was wrong and what to do about it")
    detail: dict[str, Any] | None = None


class ModelRef(BaseModel):
    name: str
    version: int
    weights_real: bool = Field(description="false when the model runs on seeded random weights")


class ClassPrediction(BaseModel):
    class_id: int
    label: str
    confidence: float = Field(description="softmax probability")


class EmbeddingStats(BaseModel):
    dim: int
    mean: float
    variance: float


class ClassifyResponse(BaseModel):
    model: ModelRef
    preprocessing: str
    predictions: list[ClassPrediction]
    embedding_stats: EmbeddingStats
    embedding: list[float] | None = None


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Landmark(BaseModel):
    name: str
    x: float
    y: float
    confidence: float | None = Field(None, description="heatmap peak (heatmap models only)")


class Face(BaseModel):
    box: Box
    score: float
    landmarks: list[Landmark] = Field(default_factory=list, description="15 points in the network's output order")


class ImageSize(BaseModel):
    width: int
    height: int


class FaceSearch(BaseModel):
    """How the detector covered the photo (docs/faces.md)."""

    min_face: int = Field(description="the smallest face height (px) the search was sized for (request's min_face)")
    views: int = Field(description="detector inputs: the whole photo letterboxed, plus tiles for a large photo")
    tile_width: int | None = Field(description="photo pixels per tile at the finest level; null: no tiles")
    capped: bool = Field(description="the tile cap made the tiles coarser than configured")
    warning: str | None = Field(None, description="when capped: the face size below which faces may be missed")


class FacesResponse(BaseModel):
    models: list[ModelRef]
    image: ImageSize
    faces: list[Face]
    search: FaceSearch | None = None


class Detection(BaseModel):
    box: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the photo's pixels")
    score: float = Field(description="objectness x class probability")
    class_id: int
    label: str


class DetectThresholds(BaseModel):
    score_threshold: float
    iou_threshold: float
    max_detections: int


class DetectResponse(BaseModel):
    model: ModelRef
    image: ImageSize
    detections: list[Detection]
    count: int
    thresholds: DetectThresholds


class LandmarksResponse(BaseModel):
    model: ModelRef
    image: ImageSize
    landmarks: list[Landmark]


class DigitUncertainty(BaseModel):
    """What T Monte-Carlo dropout passes say (entropies in nats); see docs/uncertainty.md."""

    predictive_entropy: float = Field(description="entropy of the mean distribution: total uncertainty")
    expected_entropy: float = Field(description="mean entropy of the single passes: the aleatoric part")
    mutual_information: float = Field(description="predictive - expected entropy: the epistemic part")
    variation_ratio: float = Field(description="share of passes whose digit differs from the most voted one")
    samples: int = Field(description="Monte-Carlo samples T")
    method: str = Field("mc_dropout", description=(
        "mc_dropout, or deterministic for an imported model without dropout to sample (one pass; docs/models.md)"))
    score: str | None = Field(description="the score 'reliable' is decided on")
    threshold: float | None = Field(description="reliable when score <= threshold (calibrated for this T); null: uncalibrated")
    energy: float | None = Field(None, description="-logsumexp of the deterministic logits: low for inputs like the "
                                 "training digits, high for what the network never saw")
    energy_threshold: float | None = Field(None, description="calibrated on held-out digits: reliable needs energy <= it")
    distance: float | None = Field(None, description="1 - cosine similarity of the trunk's features to the nearest of "
                                   "3,000 training digits: 0 for a training digit, higher for the unfamiliar")
    distance_threshold: float | None = Field(None, description="calibrated on held-out digits: reliable needs distance <= it")
    in_distribution: bool | None = Field(None, description="energy <= energy_threshold and distance <= distance_threshold; "
                                         "null: neither rule calibrated")


class DigitResponse(BaseModel):
    model: ModelRef
    digit: int | None = Field(description="the predicted digit (argmax of the mean distribution); null when the image holds no ink")
    probability: float = Field(description="mean probability of the predicted digit over the MC samples")
    reliable: bool = Field(description="whether the model itself trusts this prediction (calibrated threshold)")
    reason: str | None = Field(None, description=(
        "why the answer is not reliable: blank (no readable ink), unfamiliar (energy or distance above its threshold: "
        "unlike the training digits), uncertain (the MC-dropout score above its threshold), uncalibrated; null when reliable"))
    blank: bool = Field(False, description="the image holds no readable ink")
    inverted: bool | None = Field(None, description="the image was dark ink on light paper")
    probabilities: list[float] | None = Field(None, description="mean distribution over 0..9 (with ?probabilities=true)")
    uncertainty: DigitUncertainty | None = None


class ModelInfo(BaseModel):
    name: str
    status: str = Field(description="available | unavailable")
    reason: str | None = None
    info: dict[str, Any] | None = None


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    ingress: dict[str, Any] | None = Field(None, description=(
        "the Preprocessor replica that answered: pid, live settings, requests in flight, model calls in flight and retried"))


class HealthResponse(BaseModel):
    status: str
    models: dict[str, str] = Field(default_factory=dict)


# -- the Open Inference Protocol (/v2): its own error form and answers ---------------------------------------
class V2Error(BaseModel):
    """The protocol's error: what was wrong, in one string (tritonclient raises it as the exception's message)."""

    error: str


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="binary_tensor_data, model_configuration, statistics")


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="UINT8, FP32, ...")
    shape: list[int] = Field(description="batch first; -1 for every dynamic axis")


class V2ModelMetadata(BaseModel):
    name: str = Field(description="the served name")
    versions: list[str] = Field(description="the version its deployment serves")
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelConfig(BaseModel):
    """Triton's model configuration (the fields perf_analyzer reads; dims without the batch axis)."""

    model_config = ConfigDict(extra="allow")
    name: str
    platform: str
    max_batch_size: int = Field(description="the deployment's live max_batch_size")
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]


class V2ModelStats(BaseModel):
    model_stats: list[dict[str, Any]] = Field(description=(
        "Triton's statistics: name, version, inference_count, execution_count, inference_stats, batch_stats"))


class V2OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(None, description="flat, row-major (absent for a binary output)")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size for a binary output")


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it sent one")
    outputs: list[V2OutputTensor]
