"""The HTTP API: one FastAPI ingress composing the model deployments through handles.

Routes are versioned under /v1. Classification and digits chain Preprocessor -> model by passing
the preprocessor's response straight into the model's handle call, so the tensor goes from one
replica to the next without coming back through the ingress.
"""


import asyncio
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from lensgraph.errors import InvalidRequest, ModelUnavailable
from lensgraph.imaging.transforms import CropBox
from lensgraph.postprocess.landmarks import landmark_records
from pipelines import errors
from pipelines.http_inputs import read_image
from pipelines.schemas import (
    ClassifyResponse,
    DigitResponse,
    ErrorResponse,
    FacesResponse,
    HealthResponse,
    LandmarksResponse,
    ModelInfo,
    ModelsResponse,
)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}

app = FastAPI(
    title="lensgraph",
    version="1",
    description="Vision models behind one API: face landmarks, ImageNet classification, digits with uncertainty.",
)
errors.install(app)


def _ref(info: dict[str, Any]) -> dict[str, Any]:
    return {"name": info["name"], "version": info["version"], "weights_real": bool(info["weights"].get("real"))}


@serve.deployment(name="Gateway", max_ongoing_requests=256)
@serve.ingress(app)
class Gateway:
    def __init__(
        self,
        preprocessor: DeploymentHandle,
        models: dict[str, DeploymentHandle],
        max_upload_bytes: int,
    ) -> None:
        self.preprocessor = preprocessor
        self.models = models
        self.max_upload_bytes = max_upload_bytes
        self._cards: dict[str, dict[str, Any]] = {}

    async def _model(self, name: str) -> tuple[DeploymentHandle, dict[str, Any]]:
        """The model's handle and card; 503 with the reason when it has no model loaded."""
        info = self._cards.get(name)
        if info is None:
            info = await self.models[name].info.remote()
            if info.get("available"):
                self._cards[name] = info  # a loaded model's card does not change under a replica
        if not info.get("available"):
            raise ModelUnavailable(f"{name} is unavailable: {info.get('reason')}")
        return self.models[name], info

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS, summary="ImageNet top-k")
    async def classify(
        self,
        request: Request,
        top_k: int = Query(2, ge=1, description="how many classes to return"),
        embedding: bool = Query(False, description="also return the embedding vector"),
        profile: str = Query("standard", description="standard | zoom-crop-pad"),
        seed: int | None = Query(None, description="makes zoom-crop-pad's random crop reproducible"),
    ) -> dict[str, Any]:
        handle, info = await self._model("classifier")
        classes = int(info["outputs"][0]["shape"][-1])
        if top_k > classes:
            raise InvalidRequest(f"top_k={top_k} is more than the model's {classes} classes")
        data = await read_image(request, self.max_upload_bytes)
        prepared = self.preprocessor.classifier_input.remote(data, profile, seed)
        result = await handle.classify.remote(prepared, top_k, embedding)
        return {"model": _ref(info), "preprocessing": profile, **result}

    @app.post("/v1/faces", response_model=FacesResponse, responses=ERRORS, summary="faces and 15 landmarks each")
    async def faces(
        self,
        request: Request,
        score_threshold: float | None = Query(None, ge=0.0, le=1.0, description="detector score cut-off"),
        iou_threshold: float | None = Query(None, ge=0.0, le=1.0, description="NMS overlap"),
        landmarks: bool = Query(True, description="run model B on every face"),
    ) -> dict[str, Any]:
        _, detector = await self._model("face_detector")
        _, landmark_model = await self._model("landmarks")
        data = await read_image(request, self.max_upload_bytes)
        result = await self.preprocessor.faces.remote(data, score_threshold, iou_threshold, landmarks)
        faces = [
            {"box": {k: f[k] for k in ("x1", "y1", "x2", "y2")}, "score": f["score"], "landmarks": f.get("landmarks", [])}
            for f in result["faces"]
        ]
        return {
            "models": [_ref(detector), _ref(landmark_model)],
            "image": {"width": result["width"], "height": result["height"]},
            "faces": faces,
        }

    @app.post("/v1/landmarks", response_model=LandmarksResponse, responses=ERRORS, summary="landmarks of a face crop")
    async def landmarks(self, request: Request) -> dict[str, Any]:
        handle, info = await self._model("landmarks")
        data = await read_image(request, self.max_upload_bytes)
        crop, meta = await self.preprocessor.landmark_input.remote(data)
        result = await handle.predict.remote(crop)
        box = CropBox(meta["x0"], meta["y0"], meta["side"])
        points = box.to_image(result["points"], out_size=crop.shape[0])
        marks = landmark_records(points, result["confidence"])
        return {"model": _ref(info), "image": {"width": meta["width"], "height": meta["height"]}, "landmarks": marks}

    @app.post("/v1/digits", response_model=DigitResponse, responses=ERRORS, summary="a digit and whether to trust it")
    async def digits(
        self,
        request: Request,
        probabilities: bool = Query(False, description="also return the mean probability of every digit"),
        seed: int | None = Query(None, ge=0, le=2**63 - 1, description="makes the dropout masks, so the answer, reproducible"),
        samples: int | None = Query(None, ge=1, le=200, description="Monte-Carlo dropout samples T (default: the model's, 30)"),
    ) -> dict[str, Any]:
        handle, info = await self._model("digits")
        data = await read_image(request, self.max_upload_bytes)
        prepared = await self.preprocessor.digits_input.remote(data)
        base = {"model": _ref(info), "blank": bool(prepared["blank"]), "inverted": bool(prepared["inverted"])}
        if prepared["blank"]:
            return {**base, "digit": None, "probability": 0.0, "reliable": False}
        result = await handle.predict.remote(prepared["image"], samples, seed)
        if not probabilities:
            result.pop("probabilities", None)
        return {**base, **result}

    @app.get("/v1/models", response_model=ModelsResponse, summary="models, weights and live batching settings")
    async def list_models(self) -> dict[str, Any]:
        names = sorted(self.models)
        infos = await asyncio.gather(*(self.models[n].info.remote() for n in names), return_exceptions=True)
        out = []
        for name, info in zip(names, infos):
            if isinstance(info, BaseException):
                out.append(ModelInfo(name=name, status="unavailable", reason=f"{type(info).__name__}: {info}"))
            elif not info.get("available"):
                out.append(ModelInfo(name=name, status="unavailable", reason=info.get("reason")))
            else:
                out.append(ModelInfo(name=name, status="available", info=info))
        return {"models": out}

    @app.get("/healthz", response_model=HealthResponse, summary="liveness: the ingress answers")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=HealthResponse, summary="readiness: every deployed model answers")
    async def readyz(self) -> JSONResponse:
        names = list(self.models)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.models[n].info.remote(), timeout=5) for n in names), return_exceptions=True
        )
        states = {}
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                states[name] = f"not ready: {type(result).__name__}"
            else:
                states[name] = "ready" if result.get("available") else f"unavailable: {result.get('reason')}"
        # Ready when every deployment answers; a model that was never built does not hold the others back.
        ready = not any(s.startswith("not ready") for s in states.values())
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "not ready", "models": states})
