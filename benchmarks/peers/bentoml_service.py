"""The classifier served by BentoML 1.4 with adaptive batching: the benchmark's BentoML peer.

Runs inside ``.bench/venvs/bentoml`` (see ``venvs.py``), started by ``launch.py`` as

    bentoml serve bentoml_service:LensgraphClassifier --host 127.0.0.1 --port PORT --working-dir benchmarks/peers

Request: ``POST /classify`` with the encoded image as the raw body (any Content-Type, e.g.
``image/jpeg``): one image per request, as lensgraph's ``/v1/classify`` takes it. Answer: JSON
``{"predictions": [{"class_id", "label", "confidence"} x k], "embedding_stats": {...}}``, built by
the same ``ClassifierRunner`` as lensgraph's, so the work per image is the same: decode
(``decode_image``), ``classifier_standard`` (shorter side 256, centre crop 224), the ONNX model on
the whole batch through ONNX Runtime, top-k with softmax confidence.

Batching: BentoML's adaptive ("cork") dispatcher groups single-image requests into one call of
the batch handler, up to ``max_batch_size`` images; ``max_latency_ms`` is its latency target,
above which it answers 503 rather than queueing (it is not a batch wait window). Decoding and
preprocessing run in the batch handler, one image after the other, on BentoML's worker thread:
that is where BentoML hands user code the requests; there is no separate per-request stage.

Configuration (environment, read at import; ``launch.py`` sets them):

  LENSGRAPH_MODEL_REPOSITORY   the built model repository (default: <repo>/model_repository)
  PEER_MAX_BATCH_SIZE          adaptive batching's max batch size (default 16, as lensgraph's Classifier)
  PEER_MAX_LATENCY_MS          adaptive batching's latency target in ms (default 10000)
  PEER_THREADS                 ONNX Runtime intra-op threads (default 2)
  PEER_WORKERS                 BentoML worker processes (default 1; each loads its own session)
  PEER_TOP_K                   classes per answer (default 2)
"""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import bentoml
from _bentoml_sdk.io_models import IORootModel  # the root-model base BentoML's own specs derive from

from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.transforms import classifier_standard
from lensgraph.inference.classifier import ClassifierRunner
from lensgraph.repository.store import find_model
from lensgraph.runtime.session import SessionConfig

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = Path(os.environ.get("LENSGRAPH_MODEL_REPOSITORY") or ROOT / "model_repository")
MAX_BATCH_SIZE = int(os.environ.get("PEER_MAX_BATCH_SIZE", "16"))
MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "10000"))
THREADS = int(os.environ.get("PEER_THREADS", "2"))
WORKERS = int(os.environ.get("PEER_WORKERS", "1"))
TOP_K = int(os.environ.get("PEER_TOP_K", "2"))


class RawImageBody(IORootModel[list[bytes]]):
    """Input spec: the raw request body is one encoded image.

    BentoML's batch dispatcher concatenates the per-request values as lists, so each request
    contributes ``[body]``; the batch handler receives ``list[bytes]``.
    """

    __root_input__ = True
    media_type = "image/jpeg"

    @classmethod
    async def from_http_request(cls, request: t.Any, serde: t.Any) -> "RawImageBody":
        return cls([await request.body()])


class OneResult(IORootModel[dict[str, t.Any]]):
    """Output spec: the batch handler returns one dict per image; each request gets its own."""

    @classmethod
    async def to_http_response(cls, obj: t.Any, serde: t.Any) -> t.Any:
        if isinstance(obj, list):  # the dispatcher hands each request its slice of the batch: [result]
            (obj,) = obj
        return await super().to_http_response(obj, serde)


@bentoml.service(
    workers=WORKERS,
    threads=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class LensgraphClassifier:
    def __init__(self) -> None:
        entry = find_model(REPOSITORY, "classifier")
        self.runner = ClassifierRunner(entry, SessionConfig(intra_op_threads=THREADS))

    @bentoml.api(
        route="/classify",
        input_spec=RawImageBody,
        output_spec=OneResult,
        batchable=True,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def classify(self, images: list[bytes]) -> list[dict[str, t.Any]]:
        crops = [classifier_standard(decode_image(data).pixels) for data in images]
        return self.runner.run_batch([(crop, TOP_K, False) for crop in crops])
