"""The HTTP ingress, which is also the preprocessing stage: the DAG's root deployment, ``Preprocessor``.

An upload is decoded where it lands, so it never crosses a process boundary; each route then makes
its model's input (lensgraph.routes) and calls that model's deployment directly. Classify and
digits: HAProxy -> Preprocessor (decode + prepare) -> model -> Preprocessor. Faces: Preprocessor
(decode) -> FaceDetector -> Preprocessor (crops from the photo it holds) -> LandmarkModel, one call
carrying every face of the request. Only small uint8 tensors travel (150 KB, 230 KB, 9 KB a face).

Answers are built as plain dicts and sent as JSON directly: the pydantic response models in
pipelines/schemas.py describe the API in OpenAPI (/docs) and the tests check answers against
them, but they are not re-validated on every request.

/v2 is the Open Inference Protocol (KServe v2, Triton's HTTP API) for every served model, by its served
name: the card's tensors in, the graph's outputs out, through the same batched model deployments
(lensgraph.protocol.v2 checks each request here, before any model sees it; docs/api.md).
"""


import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from lensgraph import __version__
from lensgraph.errors import DeadlineExceeded, ModelUnavailable, UnknownModel
from lensgraph.imaging.decode import DecodedImage, ImageLimits, decode_image
from lensgraph.routes import classify, detect, digits, faces, landmarks
from lensgraph.protocol import stats as protocol_stats
from lensgraph.protocol import v2 as protocol_v2
from lensgraph.routes.faces import DEFAULT_MIN_FACE
from lensgraph.security import redact
from lensgraph.serving_plan import CONVENTIONAL, ROUTE_TASKS, choose
from pipelines import admission, errors, guard, open_inference, pictures, web_page
from pipelines.admission import AdmissionMiddleware
from pipelines.guard import GuardMiddleware
from pipelines.http_inputs import openapi_extra, read_image, request_deadline
from pipelines.model_calls import ModelCalls
from pipelines.schemas import (
    ClassifyResponse,
    DetectResponse,
    DigitResponse,
    ErrorResponse,
    FacesResponse,
    HealthResponse,
    LandmarksResponse,
    ModelInfo,
    ModelsResponse,
    V2Error,
    V2InferResponse,
    V2Live,
    V2ModelConfig,
    V2ModelMetadata,
    V2ModelReady,
    V2ModelStats,
    V2Ready,
    V2ServerMetadata,
)

logger = logging.getLogger("ray.serve")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)}
# The /v1 image routes: JSON by default, the answer drawn on the photo with ?render=true (pipelines/pictures.py).
IMAGE_REPLIES = {**ERRORS, 200: {"content": pictures.PICTURE_CONTENT}}
IMAGE_ROUTE = openapi_extra(image=True)  # the requestBody and headers the routes read by hand
OTHER_ROUTE = openapi_extra(image=False)
V2_ERRORS = {code: {"model": V2Error} for code in (400, 404, 413, 422, 503, 504)}  # the protocol's error form
V2_ROUTE = open_inference.route_extra(infer=False)
V2_INFER_ROUTE = open_inference.route_extra(infer=True)
# Examples name the built-ins, so /docs and the schema fuzzer reach real models, not only unknown names.
V2_NAME = Path(description="a served model's name (GET /v1/models)", examples=["classifier", "digits"])
V2_VERSION = Path(description="the version its deployment serves (1 for the built-ins)", examples=["1"])

app = FastAPI(
    title="lensgraph",
    version="1",
    description="Vision models behind one API: face landmarks, ImageNet classification, digits with uncertainty.",
)
errors.install(app)
web_page.install(app)  # GET / (the web page, lensgraph/web) and its files; not in the OpenAPI schema
app.add_middleware(AdmissionMiddleware)  # counts and refuses model requests before FastAPI routes them
app.add_middleware(GuardMiddleware)  # outermost: API keys and rate limits, off by default (docs/security.md)


class PreprocessorSettings(BaseModel):
    """``user_config`` of the Preprocessor (the ingress); changes apply to live replicas."""

    model_config = ConfigDict(extra="forbid")
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024, description="decoded pixels, checked from the header")
    face_crop_scale: float = Field(1.0, gt=0.5, le=2.0, description="landmark crop side / face box side")
    # Face search tiling: unset, the detector card's options decide (configs/models.yaml; 800, 0.5, 64, 0.7).
    face_tile_width: int | None = Field(None, ge=160, le=8192, description=(
        "photo pixels per face-detector tile (the smaller, the smaller the faces found, and the more tiles)"))
    face_tile_overlap: float | None = Field(None, ge=0.0, le=0.75, description="share of a tile its neighbours overlap")
    face_max_tiles: int | None = Field(None, ge=0, le=256, description=(
        "tiles per photo at most (0: whole photo only); larger photos get larger tiles"))
    face_tile_score_threshold: float | None = Field(None, ge=0.0, le=1.0, description=(
        "score a face found in a tile needs (at least the request's score_threshold too)"))
    decode_threads: int = Field(
        0, ge=0, le=64,
        description="0: decode on the replica's event loop (cheapest on small nodes); N: a pool of N threads",
    )
    max_in_flight: int = Field(
        32, ge=1, le=100_000,
        description="model requests this replica works on at once; more are refused at once with 503 + Retry-After",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, le=600, description="deadline of a request (504 after it); X-Request-Timeout may ask for less",
    )
    # Rate limits (pipelines/guard.py, docs/security.md): a token bucket per API key, or per client address
    # when API keys are off, on each ingress replica; over it: 429 + Retry-After.
    rate_limit_per_s: float = Field(0.0, ge=0, le=1_000_000, description="requests a second per client; 0: off")
    rate_limit_burst: int = Field(
        0, ge=0, le=1_000_000, description="requests a client may send at once; 0: the rate rounded up (at least 1)",
    )
    rate_limit_client_header: str | None = Field(
        None, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="API keys off: a header your own proxy in front sets to the client's address (e.g. X-Real-IP); "
                    "unset: the connection's peer (behind Serve's HAProxy that is HAProxy: one bucket per node)",
    )


@serve.deployment(name="Preprocessor", max_ongoing_requests=256)
@serve.ingress(app)
class Preprocessor:
    def __init__(self, models: dict[str, DeploymentHandle], max_upload_bytes: int,
                 defaults: dict[str, bool] | None = None) -> None:
        self.models = models  # served name -> its deployment (pipelines/app.py, lensgraph/serving_plan.py)
        self.defaults = {name: bool((defaults or {}).get(name)) for name in models}
        self._picked: dict[tuple[str, str | None], str] = {}
        self.call = ModelCalls(models)  # counted, retried once when a model replica dies
        self.max_upload_bytes = max_upload_bytes
        self.settings = PreprocessorSettings()
        # Through the module, never a name bound here: Serve pickles this class by value, with copies of the
        # globals it names, and the middleware must see the replica's own guard.GUARD.
        guard.GUARD.configure(self.settings)  # reads $LENSGRAPH_API_KEYS_FILE: a broken key file fails the replica
        self._pool: ThreadPoolExecutor | None = None
        self._cards: dict[str, dict[str, Any]] = {}
        self._card_fetches: dict[str, asyncio.Future] = {}
        self._geometry: dict[str, Any] = {}
        if os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") != "1":
            logger.warning(
                "Serve runs without configs/serve.env (no RAY_SERVE_THROUGHPUT_OPTIMIZED, no HAProxy): answers are "
                "the same, throughput is about half and idle CPU higher; `make run` or "
                "`set -a; . configs/serve.env; serve run serve_config.yaml` applies it (docs/serving.md)")

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        new = PreprocessorSettings.model_validate(user_config or {})
        if new.decode_threads != self.settings.decode_threads or (self._pool is None and new.decode_threads):
            old, self._pool = self._pool, ThreadPoolExecutor(new.decode_threads, "decode") if new.decode_threads else None
            if old is not None:
                old.shutdown(wait=False)
        tiles = ("face_crop_scale", "face_tile_width", "face_tile_overlap", "face_max_tiles", "face_tile_score_threshold")
        if any(getattr(new, name) != getattr(self.settings, name) for name in tiles):
            self._geometry = {k: v for k, v in self._geometry.items() if k[0] != "faces"}
        admission.ADMISSION.set_limit(new.max_in_flight)  # through the module: see guard.GUARD above
        guard.GUARD.configure(new)  # rate limits, and the key file read again
        self.settings = new

    # -- admission and deadlines ---------------------------------------------------------------------
    async def _admit(self, request: Request, work) -> JSONResponse:
        """Run one model request within its deadline (admission itself is pipelines/admission.py).

        A request past its deadline is cancelled, and the cancellation reaches the model
        deployment's queue through the handle."""
        try:
            deadline = request_deadline(request, self.settings.request_timeout_s)
        except Exception:
            work.close()  # never started: no "coroutine was never awaited"
            raise
        try:
            async with asyncio.timeout(deadline):  # a timer on this task, no new task per request
                return await work
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within the request's deadline of {deadline:g} s") from None

    # -- the work of this stage ------------------------------------------------------------------
    def _decode(self, data: bytes) -> DecodedImage:
        s = self.settings
        return decode_image(data, ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_pixels))

    async def _cpu(self, fn, *args):
        """Decoding and resizing: inline (no thread hand-off) unless a decode pool is configured."""
        if self._pool is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _geometry_of(self, key: tuple[str, ...], make):
        """A route's input geometry for its models, derived from their cards once per replica (``make()``)."""
        geometry = self._geometry.get(key)
        if geometry is None:
            geometry = self._geometry[key] = make()
        return geometry

    async def _info(self, name: str) -> dict[str, Any]:
        """A served model's ``info()`` (its card and live settings), fetched once when it is available.

        Concurrent first requests share one fetch, so a burst at start-up does not flood the model's queue."""
        info = self._cards.get(name)
        if info is None:
            pending = self._card_fetches.get(name)
            if pending is None:
                pending = self._card_fetches[name] = asyncio.ensure_future(self.call(name, "info"))
                pending.add_done_callback(lambda _: self._card_fetches.pop(name, None))
            info = await asyncio.shield(pending)  # one waiter's deadline must not cancel the others' fetch
            if info.get("available"):
                self._cards[name] = info  # a loaded model's card does not change under a replica
        return info

    async def _card(self, name: str) -> dict[str, Any]:
        """The model's card; 503 with the reason when it is unavailable."""
        info = await self._info(name)
        if not info.get("available"):
            raise ModelUnavailable(f"{name} is unavailable: {info.get('reason')}")
        return info

    async def _run(self, name: str, card: dict[str, Any], method: str, *args: Any) -> tuple[dict[str, Any], Any]:
        """Call a model; the answer's card is the version that answered (a live version change re-reads it)."""
        version, result = await self.call(name, method, *args)
        if version != card.get("version"):
            self._cards.pop(name, None)
            card = await self._card(name)
        return card, result

    async def _pick(self, route: str, requested: str | None) -> tuple[str, dict[str, Any]]:
        """The served model that answers ``route`` (``?model=`` or the route's default) and its card."""
        name = self._picked.get((route, requested))
        if name is None:
            tasks: dict[str, str | None] = {}
            if requested is not None and requested in self.models:
                tasks[requested] = (await self._card(requested)).get("task")
            elif requested is None and (any(self.defaults.values()) or CONVENTIONAL[route] not in self.models):
                infos = await asyncio.gather(*(self._info(n) for n in self.models))
                tasks = {n: i.get("task") if i.get("available") else None for n, i in zip(self.models, infos)}
            name = choose(route, requested, self.defaults, tasks)
            task = (await self._card(name)).get("task")
            if task not in ROUTE_TASKS[route]:
                raise UnknownModel(f"model {name!r} serves task {task!r}, not {' or '.join(ROUTE_TASKS[route])}")
            self._picked[(route, requested)] = name
        return name, await self._card(name)

    async def _reply(self, route: str, fmt: str | None, body: dict[str, Any], pixels: np.ndarray, **extra: Any
                     ) -> Response:
        """The answer as JSON, or drawn on the photo when the request asked for a picture (pipelines/pictures.py)."""
        if fmt is None:
            return JSONResponse(body)
        return await self._cpu(pictures.picture, route, fmt, pixels, body, extra)

    # -- routes ----------------------------------------------------------------------------------
    @app.post("/v1/classify", response_model=ClassifyResponse, responses=IMAGE_REPLIES, summary="ImageNet top-k",
              openapi_extra=IMAGE_ROUTE)
    async def classify(
        self,
        request: Request,
        top_k: int = Query(2, ge=1, description="how many classes to return"),
        embedding: bool = Query(False, description="also return the embedding vector"),
        profile: Literal["standard", "zoom-crop-pad"] = Query("standard", description="preprocessing: docs/api.md"),
        seed: int | None = Query(None, ge=0, le=2**63 - 1, description="makes zoom-crop-pad's crop reproducible"),
        model: str | None = Query(None, max_length=64, description=(
            "a served classification model (GET /v1/models); default: the app's default classifier")),
        render: bool = Query(False, description=(
            "answer with the photo and the result drawn on it (JPEG; PNG when Accept asks for image/png); an Accept "
            "of image/jpeg or image/png does the same")),
    ) -> Response:
        return await self._admit(request, self._classify(request, top_k, embedding, profile, seed, model, render))

    async def _classify(self, request: Request, top_k: int, embedding: bool, profile: str, seed: int | None,
                        model: str | None = None, render: bool = False) -> Response:
        fmt = pictures.wanted(render, request)
        name, card = await self._pick("classify", model)
        geometry = self._geometry_of(("classify", name, card["version"]), lambda: classify.ClassifyGeometry.from_card(card))
        classify.check(geometry, top_k, profile)
        data = await read_image(request, self.max_upload_bytes)
        def decode_and_prepare():
            pixels = self._decode(data).pixels
            return pixels, classify.prepare(pixels, geometry, profile, seed)

        pixels, crop = await self._cpu(decode_and_prepare)  # one hand-off
        card, result = await self._run(name, card, "classify", crop, top_k, embedding)
        return await self._reply("classify", fmt, classify.answer(card, profile, result), pixels)

    @app.post("/v1/faces", response_model=FacesResponse, responses=IMAGE_REPLIES, summary="faces and 15 landmarks each",
              openapi_extra=IMAGE_ROUTE)
    async def faces(
        self,
        request: Request,
        score_threshold: float | None = Query(None, ge=0.0, le=1.0, description="detector score cut-off"),
        iou_threshold: float | None = Query(None, ge=0.0, le=1.0, description="NMS overlap"),
        landmarks: bool = Query(True, description="run model B on every face"),
        max_faces: int | None = Query(None, ge=1, le=1000, description=(
            "faces per photo at most, best first (default: the FaceDetector deployment's max_faces, 100)")),
        min_face: int = Query(DEFAULT_MIN_FACE, ge=8, le=4096, description=(
            "the smallest face height (px) to search for: larger values mean fewer, coarser tiles, less CPU")),
        detector: str | None = Query(None, max_length=64, description="a served face detection model (default: the app's)"),
        landmark_model: str | None = Query(None, max_length=64, description="a served landmark model (default: the app's)"),
        render: bool = Query(False, description=(
            "answer with the photo and the result drawn on it (JPEG; PNG when Accept asks for image/png); an Accept "
            "of image/jpeg or image/png does the same")),
    ) -> Response:
        return await self._admit(request, self._faces(request, score_threshold, iou_threshold, landmarks, max_faces,
                                                      min_face, detector, landmark_model, render))

    async def _faces(self, request: Request, score_threshold: float | None, iou_threshold: float | None,
                     landmarks: bool, max_faces: int | None = None,
                     min_face: int = DEFAULT_MIN_FACE, detector_name: str | None = None,
                     landmark_name: str | None = None, render: bool = False) -> Response:
        fmt = pictures.wanted(render, request)
        detector_name, detector = await self._pick("faces", detector_name)
        landmark_name, landmark_card = await self._pick("landmarks", landmark_name)
        key = ("faces", detector_name, detector["version"], landmark_name, landmark_card["version"])
        geometry = self._geometry_of(key, lambda: faces.FaceGeometry.from_cards(
            detector, landmark_card, self.settings.face_crop_scale, tile_width=self.settings.face_tile_width,
            tile_overlap=self.settings.face_tile_overlap, max_tiles=self.settings.face_max_tiles,
            tile_score_threshold=self.settings.face_tile_score_threshold))
        data = await read_image(request, self.max_upload_bytes)

        def decode_and_resize():
            pixels = self._decode(data).pixels
            plan = faces.photo_plan(pixels.shape[1], pixels.shape[0], geometry, min_face)
            return pixels, plan, faces.detector_item(pixels, geometry, score_threshold, iou_threshold, max_faces,
                                                     plan=plan)

        pixels, plan, item = await self._cpu(decode_and_resize)  # one hand-off for the decode and model A's input
        detector, found = await self._run(detector_name, detector, "detect", *item)
        cut = results = None
        if landmarks:
            cut = await self._cpu(faces.crops, pixels, found, geometry)
            if cut:
                landmark_card, results = await self._landmarks(landmark_name, landmark_card, [crop for crop, _ in cut])
            else:
                results = []
        h, w = pixels.shape[:2]
        body = faces.answer(detector, landmark_card, w, h, found, cut, results, geometry, min_face, plan)
        return await self._reply("faces", fmt, body, pixels)

    async def _landmarks(self, name: str, card: dict[str, Any], crops: list) -> tuple[dict[str, Any], list[dict]]:
        """Model B on every crop of one request in one call; crops of many requests share its batches."""
        return await self._run(name, card, "predict_many", np.stack(crops))

    @app.post("/v1/landmarks", response_model=LandmarksResponse, responses=IMAGE_REPLIES, summary="landmarks of a face crop",
              openapi_extra=IMAGE_ROUTE)
    async def landmarks(
        self,
        request: Request,
        model: str | None = Query(None, max_length=64, description="a served landmark model (default: the app's)"),
        render: bool = Query(False, description=(
            "answer with the photo and the result drawn on it (JPEG; PNG when Accept asks for image/png); an Accept "
            "of image/jpeg or image/png does the same")),
    ) -> Response:
        return await self._admit(request, self._landmark_route(request, model, render))

    async def _landmark_route(self, request: Request, model: str | None = None, render: bool = False) -> Response:
        fmt = pictures.wanted(render, request)
        name, card = await self._pick("landmarks", model)
        side = self._geometry_of(("landmarks", name, card["version"]), lambda: landmarks.crop_side(card))
        data = await read_image(request, self.max_upload_bytes)

        def decode_and_crop():
            pixels = self._decode(data).pixels
            return pixels, landmarks.prepare(pixels, side)

        pixels, (crop, box) = await self._cpu(decode_and_crop)  # one hand-off
        h, w = pixels.shape[:2]
        card, (result,) = await self._landmarks(name, card, [crop])
        return await self._reply("landmarks", fmt, landmarks.answer(card, w, h, box, result, side), pixels)

    @app.post("/v1/digits", response_model=DigitResponse, responses=IMAGE_REPLIES, summary="a digit and whether to trust it",
              openapi_extra=IMAGE_ROUTE)
    async def digits(
        self,
        request: Request,
        probabilities: bool = Query(False, description="also return the mean probability of every digit"),
        seed: int | None = Query(None, ge=0, le=2**63 - 1, description="makes the dropout masks, so the answer, reproducible"),
        samples: int | None = Query(None, ge=1, le=200, description="Monte-Carlo dropout samples T (default: the model's, 30)"),
        model: str | None = Query(None, max_length=64, description="a served digits model (default: the app's)"),
        render: bool = Query(False, description=(
            "answer with the photo and the result drawn on it (JPEG; PNG when Accept asks for image/png); an Accept "
            "of image/jpeg or image/png does the same")),
    ) -> Response:
        return await self._admit(request, self._digits(request, probabilities, seed, samples, model, render))

    async def _digits(self, request: Request, probabilities: bool, seed: int | None, samples: int | None,
                      model: str | None = None, render: bool = False) -> Response:
        fmt = pictures.wanted(render, request)
        name, card = await self._pick("digits", model)
        self._geometry_of(("digits", name, card["version"]), lambda: digits.check_card(card))
        data = await read_image(request, self.max_upload_bytes)
        def decode_and_prepare():
            decoded = self._decode(data)
            return decoded, digits.prepare(decoded)

        decoded, prepared = await self._cpu(decode_and_prepare)  # one hand-off
        result = None
        if not prepared.blank:
            card, result = await self._run(name, card, "predict", prepared.image, samples, seed)
        body = digits.answer(card, prepared, result, probabilities)
        return await self._reply("digits", fmt, body, decoded.pixels, digit_image=prepared,
                                 probabilities=None if result is None else result["probabilities"])

    @app.post("/v1/detect", response_model=DetectResponse, responses=IMAGE_REPLIES, summary="objects: boxes, classes, scores",
              openapi_extra=IMAGE_ROUTE)
    async def detect_route(
        self,
        request: Request,
        score_threshold: float | None = Query(None, ge=detect.SCORE_RANGE[0], le=detect.SCORE_RANGE[1],
                                              description="objectness x class probability cut-off (default: the card's)"),
        iou_threshold: float | None = Query(None, ge=detect.IOU_RANGE[0], le=detect.IOU_RANGE[1],
                                            description="NMS overlap per class (default: the card's)"),
        max_detections: int | None = Query(None, ge=detect.MAX_DETECTIONS_RANGE[0], le=detect.MAX_DETECTIONS_RANGE[1],
                                           description="boxes at most, best first (default: the card's)"),
        model: str | None = Query(None, max_length=64, description="a served detection model (default: the app's)"),
        render: bool = Query(False, description=(
            "answer with the photo and the result drawn on it (JPEG; PNG when Accept asks for image/png); an Accept "
            "of image/jpeg or image/png does the same")),
    ) -> Response:
        return await self._admit(request, self._detect(request, score_threshold, iou_threshold, max_detections, model,
                                                       render))

    async def _detect(self, request: Request, score_threshold: float | None, iou_threshold: float | None,
                      max_detections: int | None, model: str | None, render: bool = False) -> Response:
        fmt = pictures.wanted(render, request)
        name, card = await self._pick("detect", model)
        geometry = self._geometry_of(("detect", name, card["version"]), lambda: detect.DetectGeometry.from_card(card))
        limits = detect.thresholds(geometry, score_threshold, iou_threshold, max_detections)
        data = await read_image(request, self.max_upload_bytes)
        def decode_and_prepare():
            pixels = self._decode(data).pixels
            return pixels, *detect.prepare(pixels, geometry)

        pixels, image, mapping = await self._cpu(decode_and_prepare)  # one hand-off
        card, result = await self._run(name, card, "detect_objects", image, mapping, limits)
        return await self._reply("detect", fmt, result, pixels)

    # -- the service -----------------------------------------------------------------------------
    @app.get("/v1/models", response_model=ModelsResponse, summary="models, weights and live batching settings",
             openapi_extra=OTHER_ROUTE)
    async def list_models(self) -> dict[str, Any]:
        names = sorted(self.models)
        infos = await asyncio.gather(*(self.models[n].info.remote() for n in names), return_exceptions=True)
        out = []
        for name, info in zip(names, infos):
            if isinstance(info, BaseException):
                logger.warning("%s.info() failed: %r", name, info)  # the whole error here; clients get one line
                out.append(ModelInfo(name=name, status="unavailable", reason=redact.public_reason(info)))
            elif not info.get("available"):
                reason = redact.redact_paths(str(info.get("reason")))  # no server paths (docs/security.md)
                out.append(ModelInfo(name=name, status="unavailable", reason=reason))
            else:
                out.append(ModelInfo(name=name, status="available", info=info))
        return {"models": out, "ingress": {"pid": os.getpid(), "settings": self.settings.model_dump(),
                                     "in_flight": admission.ADMISSION.in_flight, "refused": admission.ADMISSION.refused,
                                     "model_calls": self.call.stats()}}

    @app.get("/healthz", response_model=HealthResponse, summary="liveness: the ingress answers",
             openapi_extra=OTHER_ROUTE)
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=HealthResponse, summary="readiness: every deployed model answers",
             responses={503: {"model": HealthResponse, "description": "a deployment does not answer"}},
             openapi_extra=OTHER_ROUTE)
    async def readyz(self) -> JSONResponse:
        ready, states = await self._readiness()
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "not ready", "models": states})

    async def _readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether every model deployment answers (a model that was never built does not hold the others
        back), and each one's state."""
        names = list(self.models)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.models[n].info.remote(), timeout=5) for n in names), return_exceptions=True
        )
        states = {}
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                states[name] = f"not ready: {type(result).__name__}"
            else:
                reason = redact.redact_paths(str(result.get("reason")))
                states[name] = "ready" if result.get("available") else f"unavailable: {reason}"
        # Ready when every deployment answers; a model that was never built does not hold the others back.
        return not any(s.startswith("not ready") for s in states.values()), states

    # -- the Open Inference Protocol (KServe v2) and Triton's extensions ------------------------------------
    # Errors here are {"error": "<message>"} (pipelines/errors.py); the served name is the model's name.
    @app.get("/v2", response_model=V2ServerMetadata, responses=V2_ERRORS, summary="server metadata (/v2)",
             openapi_extra=V2_ROUTE)
    async def v2_server(self) -> JSONResponse:
        return JSONResponse(protocol_v2.server_metadata(__version__))

    @app.get("/v2/health/live", response_model=V2Live, responses=V2_ERRORS, summary="liveness (/v2)",
             openapi_extra=V2_ROUTE)
    async def v2_live(self) -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready", response_model=V2Ready, responses=V2_ERRORS,
             summary="readiness (/v2): every model deployment answers", openapi_extra=V2_ROUTE)
    async def v2_ready(self) -> JSONResponse:
        ready, states = await self._readiness()
        if ready:
            return JSONResponse({"ready": True})
        waiting = {name: state for name, state in states.items() if state.startswith("not ready")}
        raise ModelUnavailable(f"not ready: {waiting}")

    @app.get("/v2/models/stats", response_model=V2ModelStats, responses=V2_ERRORS,
             summary="statistics of every available model (/v2, Triton's statistics extension)",
             openapi_extra=V2_ROUTE)
    async def v2_all_stats(self) -> JSONResponse:
        found = await asyncio.gather(*(self._v2_stat(name, None) for name in sorted(self.models)),
                                     return_exceptions=True)
        return JSONResponse({"model_stats": [stat for stat in found if not isinstance(stat, BaseException)]})

    @app.get("/v2/models/{model_name}", response_model=V2ModelMetadata, responses=V2_ERRORS,
             summary="model metadata (/v2)", openapi_extra=V2_ROUTE)
    async def v2_model(self, model_name: str = V2_NAME) -> JSONResponse:
        return await self._v2_metadata(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}", response_model=V2ModelMetadata,
             responses=V2_ERRORS, summary="model metadata of a version (/v2)", openapi_extra=V2_ROUTE)
    async def v2_model_version(self, model_name: str = V2_NAME, model_version: str = V2_VERSION) -> JSONResponse:
        return await self._v2_metadata(model_name, model_version)

    @app.get("/v2/models/{model_name}/ready", response_model=V2ModelReady, responses=V2_ERRORS,
             summary="model readiness (/v2)", openapi_extra=V2_ROUTE)
    async def v2_model_ready(self, model_name: str = V2_NAME) -> JSONResponse:
        return await self._v2_model_ready(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready", response_model=V2ModelReady,
             responses=V2_ERRORS, summary="model readiness of a version (/v2)", openapi_extra=V2_ROUTE)
    async def v2_model_version_ready(self, model_name: str = V2_NAME, model_version: str = V2_VERSION) -> JSONResponse:
        return await self._v2_model_ready(model_name, model_version)

    @app.get("/v2/models/{model_name}/config", response_model=V2ModelConfig, responses=V2_ERRORS,
             summary="Triton model configuration (/v2): live max_batch_size, dims without the batch axis",
             openapi_extra=V2_ROUTE)
    async def v2_config(self, model_name: str = V2_NAME) -> JSONResponse:
        return await self._v2_config(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/config", response_model=V2ModelConfig,
             responses=V2_ERRORS, summary="Triton model configuration of a version (/v2)", openapi_extra=V2_ROUTE)
    async def v2_config_version(self, model_name: str = V2_NAME, model_version: str = V2_VERSION) -> JSONResponse:
        return await self._v2_config(model_name, model_version)

    @app.get("/v2/models/{model_name}/stats", response_model=V2ModelStats, responses=V2_ERRORS,
             summary="Triton statistics (/v2): the model replica's live counters", openapi_extra=V2_ROUTE)
    async def v2_stats(self, model_name: str = V2_NAME) -> JSONResponse:
        return JSONResponse({"model_stats": [await self._v2_stat(model_name, None)]})

    @app.get("/v2/models/{model_name}/versions/{model_version}/stats", response_model=V2ModelStats,
             responses=V2_ERRORS, summary="Triton statistics of a version (/v2)", openapi_extra=V2_ROUTE)
    async def v2_stats_version(self, model_name: str = V2_NAME, model_version: str = V2_VERSION) -> JSONResponse:
        return JSONResponse({"model_stats": [await self._v2_stat(model_name, model_version)]})

    @app.post("/v2/models/{model_name}/infer", response_model=V2InferResponse,
              responses={200: open_inference.INFER_ANSWER, **V2_ERRORS}, summary="inference (/v2)",
              openapi_extra=V2_INFER_ROUTE)
    async def v2_infer(self, request: Request, model_name: str = V2_NAME) -> Response:
        return await self._admit(request, self._v2_infer(request, model_name, None))

    @app.post("/v2/models/{model_name}/versions/{model_version}/infer", response_model=V2InferResponse,
              responses={200: open_inference.INFER_ANSWER, **V2_ERRORS}, summary="inference on a version (/v2)",
              openapi_extra=V2_INFER_ROUTE)
    async def v2_infer_version(self, request: Request, model_name: str = V2_NAME, model_version: str = V2_VERSION) -> Response:
        return await self._admit(request, self._v2_infer(request, model_name, model_version))

    async def _v2_model(self, name: str, version: str | None) -> tuple[dict[str, Any], protocol_v2.Signature]:
        """A served model's card and protocol signature; 404 for a name not served or a version not served."""
        if name not in self.models:
            raise UnknownModel(f"unknown model {protocol_v2.quoted(name)}; the served models are "
                               f"{sorted(self.models)}")
        card = await self._card(name)
        if version is not None and version != str(card["version"]):
            if version.isdigit():  # the deployment may have changed version live since the card was read
                self._cards.pop(name, None)
                card = await self._card(name)
            if version != str(card["version"]):
                raise protocol_v2.VersionNotServed(
                    f"model {name!r} serves version {card['version']}, not {protocol_v2.quoted(version)}: one "
                    f"version is served at a time, the one its deployment's user_config.version names")
        signature = self._geometry_of(("v2", name, card["version"]), lambda: protocol_v2.Signature.from_card(card))
        return card, signature

    async def _v2_metadata(self, name: str, version: str | None) -> JSONResponse:
        card, signature = await self._v2_model(name, version)
        return JSONResponse(signature.metadata(name, card["version"]))

    async def _v2_model_ready(self, name: str, version: str | None) -> JSONResponse:
        if name not in self.models:
            raise UnknownModel(f"unknown model {protocol_v2.quoted(name)}; the served models are "
                               f"{sorted(self.models)}")
        try:
            info = await asyncio.wait_for(self.models[name].info.remote(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - not answering is the answer
            raise ModelUnavailable(f"model {name!r} is not ready: its deployment did not answer "
                                   f"({type(exc).__name__})") from None
        if not info.get("available"):
            raise ModelUnavailable(f"model {name!r} is not ready: {redact.redact_paths(str(info.get('reason')))}")
        if version is not None and version != str(info["version"]):
            await self._v2_model(name, version)  # 404 with the reason (and the card re-read)
        return JSONResponse({"name": name, "ready": True})

    async def _v2_state(self, name: str, version: str | None
                        ) -> tuple[dict[str, Any], protocol_v2.Signature, dict[str, Any]]:
        """Card, signature and the deployment's live protocol state (settings, counters) of one version."""
        card, signature = await self._v2_model(name, version)
        state = await self.call(name, "protocol_state")
        if not state.get("available"):
            raise ModelUnavailable(f"{name} is unavailable: {redact.redact_paths(str(state.get('reason')))}")
        if state["version"] != card["version"]:  # changed live: describe the version serving now
            self._cards.pop(name, None)
            card, signature = await self._v2_model(name, version)
        return card, signature, state

    async def _v2_config(self, name: str, version: str | None) -> JSONResponse:
        card, signature, state = await self._v2_state(name, version)
        return JSONResponse(signature.config(name, state["version"], state["max_batch_size"],
                                             state["batch_wait_timeout_s"]))

    async def _v2_stat(self, name: str, version: str | None) -> dict[str, Any]:
        _, _, state = await self._v2_state(name, version)
        return protocol_stats.model_stat(name, state["version"], state["stats"])

    async def _v2_infer(self, request: Request, name: str, version: str | None) -> Response:
        card, signature = await self._v2_model(name, version)
        body = await open_inference.read_body(request, open_inference.body_limit(self.max_upload_bytes))
        parsed = await self._cpu(protocol_v2.parse_request, body, request.headers.get(protocol_v2.HEADER_LENGTH),
                                 signature, self.max_upload_bytes)
        answered, arrays = await self.call(name, "infer_tensors", parsed.inputs, parsed.output_names(), name)
        if answered != card["version"]:  # a live version change: answer with the version that answered
            self._cards.pop(name, None)
            card, signature = await self._v2_model(name, None)
        content, length = await self._cpu(protocol_v2.encode_response, name, answered, parsed, arrays, signature)
        return open_inference.infer_response(content, length)
