"""Typed HTTP responses: what every route promises, and what OpenAPI at /docs shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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


class FacesResponse(BaseModel):
    models: list[ModelRef]
    image: ImageSize
    faces: list[Face]


class LandmarksResponse(BaseModel):
    model: ModelRef
    image: ImageSize
    landmarks: list[Landmark]


class DigitResponse(BaseModel):
    model: ModelRef
    digit: int | None = Field(description="the predicted digit; null when the image holds no ink")
    probability: float = Field(description="mean probability of the predicted digit")
    reliable: bool = Field(description="whether the model itself trusts this prediction")
    blank: bool = False
    probabilities: list[float] | None = None
    uncertainty: dict[str, float] | None = None


class ModelInfo(BaseModel):
    name: str
    status: str = Field(description="available | unavailable")
    reason: str | None = None
    info: dict[str, Any] | None = None


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str
    models: dict[str, str] = Field(default_factory=dict)
