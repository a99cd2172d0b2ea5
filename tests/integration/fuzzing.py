"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis + hypothesis), against a real server.

Every operation of /openapi.json gets three streams of cases: schema-valid ones (random bodies, which are
mostly not images), schema-valid parameters on a real image (so the query and header values reach the
models), and schema-violating ones (where the schema leaves anything to violate). Each response is
checked here rather than raised at once, so one run reports every kind of failure, without shrinking
(which would multiply the requests). ``make fuzz`` runs the same with more examples.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

ERROR_KEYS = {"error", "message", "detail"}
CHECKS = [status_code_conformance, response_schema_conformance]


def small_jpeg() -> bytes:
    """A real 96x96 photo-like JPEG: valid on every model route, cheap to run."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    pixels = np.stack([x * 2, y * 2, (x + y)], axis=2) + rng.integers(0, 30, (96, 96, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class FuzzReport:
    cases: Counter = field(default_factory=Counter)  # operation label -> requests sent
    statuses: Counter = field(default_factory=Counter)  # (label, status) -> count
    media: Counter = field(default_factory=Counter)  # (label, request body's media type) -> count
    kinds: Counter = field(default_factory=Counter)  # (label, what failed) -> count
    examples: dict = field(default_factory=dict)  # (label, what failed) -> the first case that showed it

    def fail(self, case, response, why: str) -> None:
        key = (case.operation.label, why.split(":")[0])
        self.kinds[key] += 1
        self.examples.setdefault(key, f"{why[:400]} (status {response.status_code}, body {response.content[:200]!r})"
                                      f"\n    {case.as_curl_command()[:600]}")

    @property
    def failures(self) -> list[str]:
        return [f"{n} x {label}: {self.examples[(label, why)]}" for (label, why), n in self.kinds.items()]

    def summary(self) -> str:
        def of(counter: Counter, label: str) -> str:
            return ", ".join(f"{what} x{n}" for (op, what), n in sorted(counter.items()) if op == label)

        lines = [f"{label}: {n} cases, statuses {of(self.statuses, label)}" for label, n in sorted(self.cases.items())]
        lines += [f"{label}: bodies {of(self.media, label)}" for label in sorted(self.cases) if label.startswith("POST")]
        return "\n".join(lines)


def header(response, name: str) -> str | None:
    """One header of a schemathesis Response (lower-case keys, list values); ``None`` when absent."""
    values = response.headers.get(name.lower())
    return ", ".join(values) if values else None


# Routes whose model the default app does not serve (no weights ship): their documented answer is a 503
# model_unavailable that says how to provide one (docs/models.md, "Object detection").
UNSERVED_ROUTES = frozenset({"/v1/detect"})


def _error_code(response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def problems(case, response) -> list[str]:
    """What is wrong with one answer: a 5xx, a non-JSON error, an error not in the API's format, no request id."""
    found = []
    status = response.status_code
    asked_deadline = any(k.lower() == "x-request-timeout" for k in (case.headers or {}))
    unserved = status == 503 and case.operation.path in UNSERVED_ROUTES and _error_code(response) == "model_unavailable"
    if status >= 500 and not (status == 504 and asked_deadline) and not unserved:  # 504: the client asked for it
        found.append("server error")
    sent = next((v for k, v in (case.headers or {}).items() if k.lower() == "x-request-id"), None)
    echoed = header(response, "x-request-id")
    if (echoed.strip() != sent.strip()) if sent is not None and echoed is not None else not echoed:
        # Serve echoes the client's id (HTTP strips the spaces around a header value), or makes one
        found.append(f"X-Request-ID {echoed!r} for {sent!r}")
    if status >= 400:
        content_type = header(response, "content-type") or ""
        if not content_type.startswith("application/json"):
            found.append(f"error with Content-Type {content_type!r}")
            return found
        try:
            body = json.loads(response.content)
        except ValueError:
            return [*found, "error body is not JSON"]
        if case.operation.path.startswith("/v2"):  # the Open Inference Protocol's own form (docs/api.md, "/v2")
            if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)):
                found.append("error body is not the protocol's {error}")
        elif not (isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
                  and set(body) <= ERROR_KEYS and isinstance(body.get("detail", {}), dict)):
            found.append("error body is not {error, message[, detail]}")
    return found


def fuzz(base_url: str, examples: int, image: bytes) -> FuzzReport:
    """Run the fuzz against ``base_url``; ``examples`` schema-valid cases per operation (and half as many of
    each other stream)."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", timeout=30)
    report = FuzzReport()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the schema has no operations"
    for operation in operations:
        streams = [(GenerationMode.POSITIVE, {}, examples), (GenerationMode.NEGATIVE, {}, max(1, examples // 2))]
        if operation.body:  # the image routes: valid parameters on a real image reach the models
            streams.append((GenerationMode.POSITIVE, {"body": {"file": image}, "media_type": "multipart/form-data"},
                            max(1, examples // 2)))
        for mode, fixed, count in streams:
            try:
                _run(operation, operation.as_strategy(generation_mode=mode, **fixed), count, base_url, report)
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise  # nothing to violate (e.g. only a free-form header): no negative cases, by design
    return report


def _run(operation, strategy, count: int, base_url: str, report: FuzzReport) -> None:
    # Derandomized: the same cases on every run (a failure reproduces); no shrinking: each case is a request.
    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(case=strategy)
    def one(case) -> None:
        response = case.call(base_url=base_url, timeout=120)
        report.cases[operation.label] += 1
        report.statuses[(operation.label, response.status_code)] += 1
        if case.media_type:
            report.media[(operation.label, case.media_type)] += 1
        for why in problems(case, response):
            report.fail(case, response, why)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis's failures: AssertionError subclasses, or a group of them
            report.fail(case, response, f"schema: {' '.join(str(exc).split())[:300]}")

    one()
