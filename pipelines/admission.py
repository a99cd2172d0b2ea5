"""Admission control, as a bare ASGI layer in front of FastAPI: refusing must cost next to nothing.

Under overload most requests are refused, so the price of a refusal decides how much CPU is left
for the requests that are accepted (docs/reliability.md). A request to a model route is counted
here, before FastAPI routes it, parses its query or reads its body; over the replica's limit it is
answered at once with a pre-encoded 503 JSON and ``Retry-After``. The Open Inference Protocol's infer
(``POST /v2/models/{name}[/versions/{v}]/infer``) is a model request too, refused in the protocol's form
(``{"error": "..."}``). Probes (/healthz, /readyz, /v2/health/*), /v1/models and the /v2 descriptions are
never counted or refused. The limit is the ingress's ``max_in_flight`` (live).
"""

from __future__ import annotations

import json
from typing import Any

from lensgraph.errors import Overloaded

MODEL_ROUTES = frozenset({"/v1/classify", "/v1/faces", "/v1/landmarks", "/v1/digits", "/v1/detect"})
V2_MODELS, V2_INFER = "/v2/models/", "/infer"


def is_model_request(path: str) -> bool:
    """A /v1 model route, or the Open Inference Protocol's infer of any model (version)."""
    return path in MODEL_ROUTES or (path.startswith(V2_MODELS) and path.endswith(V2_INFER))


class Admission:
    """The replica's count of model requests in progress, and its limit (one per ingress process)."""

    def __init__(self, limit: int = 32) -> None:
        self.in_flight = 0
        self.refused = 0
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        message = (f"the service is at its limit of {limit} requests in flight on this replica; "
                   f"retry after the Retry-After seconds")
        # what the error handlers would make of Overloaded, encoded once: /v1's form and the protocol's (/v2)
        self._answers = {v2: self._encoded(json.dumps(body).encode()) for v2, body in (
            (False, {"error": Overloaded.code, "message": message}), (True, {"error": message}))}

    @staticmethod
    def _encoded(body: bytes) -> tuple[tuple, dict]:
        headers = ((b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", str(Overloaded.retry_after_s).encode()))
        return headers, {"type": "http.response.body", "body": body}

    async def refuse(self, send, v2: bool = False) -> None:
        self.refused += 1
        headers, body = self._answers[v2]
        # A new headers list each time: Serve's middleware appends X-Request-ID to the list it is sent, so a
        # shared one grew by one id per refusal (every refusal carried all the earlier ones' ids).
        await send({"type": "http.response.start", "status": 503, "headers": list(headers)})
        await send(body)


ADMISSION = Admission()


class AdmissionMiddleware:
    """``app.add_middleware(AdmissionMiddleware)``: counts and bounds the model routes."""

    def __init__(self, app: Any, admission: Admission = ADMISSION) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not is_model_request(scope["path"]):
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if admission.in_flight >= admission.limit:
            await admission.refuse(send, scope["path"].startswith(V2_MODELS))
            return
        admission.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            admission.in_flight -= 1
