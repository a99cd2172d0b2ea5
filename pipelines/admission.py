"""Admission control, as a bare ASGI layer in front of FastAPI: refusing must cost next to nothing.

Under overload most requests are refused, so the price of a refusal decides how much CPU is left
for the requests that are accepted (docs/reliability.md). A request to a model route is counted
here, before FastAPI routes it, parses its query or reads its body; over the replica's limit it is
answered at once with a pre-encoded 503 JSON and ``Retry-After``. Probes (/healthz, /readyz) and
/v1/models are never counted or refused. The limit is the ingress's ``max_in_flight`` (live).
"""

from __future__ import annotations

import json
from typing import Any

from lensgraph.errors import Overloaded

MODEL_ROUTES = frozenset({"/v1/classify", "/v1/faces", "/v1/landmarks", "/v1/digits", "/v1/detect"})


class Admission:
    """The replica's count of model requests in progress, and its limit (one per ingress process)."""

    def __init__(self, limit: int = 32) -> None:
        self.in_flight = 0
        self.refused = 0
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        body = json.dumps({  # what the error handlers would make of Overloaded, encoded once
            "error": Overloaded.code,
            "message": f"the service is at its limit of {limit} requests in flight on this replica; "
                       f"retry after the Retry-After seconds",
        }).encode()
        self._headers = ((b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"retry-after", str(Overloaded.retry_after_s).encode()))
        self._body = {"type": "http.response.body", "body": body}

    async def refuse(self, send) -> None:
        self.refused += 1
        # A new headers list each time: Serve's middleware appends X-Request-ID to the list it is sent, so a
        # shared one grew by one id per refusal (every refusal carried all the earlier ones' ids).
        await send({"type": "http.response.start", "status": 503, "headers": list(self._headers)})
        await send(self._body)


ADMISSION = Admission()


class AdmissionMiddleware:
    """``app.add_middleware(AdmissionMiddleware)``: counts and bounds the model routes."""

    def __init__(self, app: Any, admission: Admission = ADMISSION) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in MODEL_ROUTES:
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if admission.in_flight >= admission.limit:
            await admission.refuse(send)
            return
        admission.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            admission.in_flight -= 1
