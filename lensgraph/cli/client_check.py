"""``lensgraph client check --url URL``: preset checks against a running deployment, PASS or FAIL each.

The checks are the list :data:`CHECKS` (data, not code paths): known answers on the sample images of the
assets folder (``--assets`` or ``$LENSGRAPH_ASSETS``), a drawn digit and a drawn letter, every error
class, real weights in ``/v1/models``, and the latency of N classify requests. Exit status 0 when every
check passes, 1 otherwise; ``--json`` prints the results for machines. With API keys on
(docs/security.md), ``--api-key`` (or ``$LENSGRAPH_API_KEY``) is sent as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CHECKS", "Check", "Context", "Outcome", "Result", "percentile", "run", "run_checks"]

MIB = 1024 * 1024
DEFAULT_UPLOAD_LIMIT = 8 * MIB  # the service's default (docs/api.md) when /v1/models does not say
REAL_WEIGHT_MODELS = ("classifier", "face_detector", "landmarks", "digits")
TENCH = "imagenet/n01440764_tench.JPEG"


# -- what a check sees and says -------------------------------------------------------------------------------


@dataclass
class Context:
    base: str
    client: httpx.Client
    assets: Path | None
    requests: int = 20
    max_p99_ms: float | None = None
    _models: dict[str, Any] | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def asset(self, relative: str) -> tuple[str, bytes]:
        if self.assets is None:
            raise CheckError("no assets folder: pass --assets DIR or set $LENSGRAPH_ASSETS")
        path = self.assets / relative
        if not path.is_file():
            raise CheckError(f"asset {relative} is not in {self.assets}")
        return path.name, path.read_bytes()

    def models(self) -> dict[str, Any]:
        """GET /v1/models, once per run."""
        if self._models is None:
            response = self.client.get(self.url("/v1/models"))
            _expect_ok(response)
            self._models = response.json()
        return self._models


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": "PASS" if self.ok else "FAIL", "detail": self.detail,
                "seconds": round(self.seconds, 3), **self.data}


class CheckError(Exception):
    """A check could not be made (a missing asset, an unexpected answer): FAIL with this message."""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code} {body.get('error')}: {body.get('message')}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:120]!r}"


def _expect_ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise CheckError(_error_text(response))


def _upload(name: str, data: bytes, mime: str = "application/octet-stream") -> dict[str, Any]:
    return {"files": {"file": (name, data, mime)}}


# -- the kinds of check -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A named check; ``run`` gives its Outcome or raises (CheckError, httpx.HTTPError: FAIL)."""

    name: str

    def run(self, ctx: Context) -> Outcome:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Ready(Check):
    def run(self, ctx: Context) -> Outcome:
        response = ctx.client.get(ctx.url("/readyz"))
        return Outcome(response.status_code == 200, f"GET /readyz -> {response.status_code}")


@dataclass(frozen=True)
class TopClass(Check):
    asset: str
    class_id: int

    def run(self, ctx: Context) -> Outcome:
        response = ctx.client.post(ctx.url("/v1/classify"), **_upload(*ctx.asset(self.asset), "image/jpeg"))
        _expect_ok(response)
        top = response.json()["predictions"][0]
        detail = f"top-1 {top['class_id']} {top['label']!r} ({top['confidence']:.3f}), expected {self.class_id}"
        return Outcome(top["class_id"] == self.class_id, detail, {"class_id": top["class_id"]})


@dataclass(frozen=True)
class FaceCount(Check):
    asset: str
    faces: int

    def run(self, ctx: Context) -> Outcome:
        response = ctx.client.post(ctx.url("/v1/faces"), **_upload(*ctx.asset(self.asset)))
        _expect_ok(response)
        found = len(response.json()["faces"])
        return Outcome(found == self.faces, f"{found} face(s), expected {self.faces}", {"faces": found})


def drawn(text: str, side: int = 140) -> Callable[[], bytes]:
    """A PNG of ``text`` in thick dark strokes on white paper, as a scanned or photographed character."""

    def make() -> bytes:
        import cv2
        import numpy as np
        from PIL import Image

        paper = np.full((side, side), 255, np.uint8)
        font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, side / 36, max(2, side // 12)
        (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
        cv2.putText(paper, text, ((side - w) // 2, (side + h) // 2), font, scale, 0, thickness, cv2.LINE_AA)
        buffer = io.BytesIO()
        Image.fromarray(paper).save(buffer, format="PNG")
        return buffer.getvalue()

    return make


@dataclass(frozen=True)
class Digit(Check):
    """``make`` draws the image; ``digit`` None: any digit, only ``reliable`` is checked."""

    make: Callable[[], bytes]
    digit: int | None
    reliable: bool

    def run(self, ctx: Context) -> Outcome:
        response = ctx.client.post(ctx.url("/v1/digits"), params={"seed": 0},
                                   **_upload("drawn.png", self.make(), "image/png"))
        _expect_ok(response)
        body = response.json()
        ok = body["reliable"] is self.reliable and (self.digit is None or body["digit"] == self.digit)
        want = ("" if self.digit is None else f"digit {self.digit}, ") + f"reliable {str(self.reliable).lower()}"
        got = f"digit {body['digit']}, reliable {str(body['reliable']).lower()}" + (
            f" ({body['reason']})" if body.get("reason") else "")
        return Outcome(ok, f"{got}; expected {want}", {"digit": body["digit"], "reliable": body["reliable"]})


@dataclass(frozen=True)
class ErrorCase(Check):
    """A bad request (``request(ctx)`` -> method, path, httpx keyword arguments) and the JSON error it must get."""

    request: Callable[[Context], tuple[str, str, dict[str, Any]]]
    status: int
    code: str

    def run(self, ctx: Context) -> Outcome:
        method, path, kwargs = self.request(ctx)
        response = ctx.client.request(method, ctx.url(path), **kwargs)
        try:
            code = response.json().get("error")
        except ValueError:
            code = None
        ok = response.status_code == self.status and code == self.code
        return Outcome(ok, f"{method} {path} -> {response.status_code} {code}; expected {self.status} {self.code}",
                       {"http_status": response.status_code, "error": code})


def _no_file(ctx: Context) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/v1/classify", {"files": {"photo": ("photo.jpg", b"not sent as 'file'", "image/jpeg")}}


def _pdf(ctx: Context) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/v1/classify", _upload("document.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
                                           "application/pdf")


def upload_limit(ctx: Context) -> int:
    """The ingress's ``max_image_bytes`` from /v1/models, or the default 8 MiB."""
    try:
        limit = ((ctx.models().get("ingress") or {}).get("settings") or {}).get("max_image_bytes")
    except (CheckError, httpx.HTTPError, ValueError):
        limit = None
    return int(limit) if isinstance(limit, int) and limit > 0 else DEFAULT_UPLOAD_LIMIT


def _too_large(ctx: Context) -> tuple[str, str, dict[str, Any]]:
    body = b"\xff\xd8\xff" + bytes(upload_limit(ctx) + MIB)  # a JPEG start, 1 MiB over the limit
    return "POST", "/v1/classify", {"content": body, "headers": {"content-type": "image/jpeg"}}


def _unknown_route(ctx: Context) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/v1/no-such-route", _upload("photo.jpg", b"\xff\xd8\xff", "image/jpeg")


@dataclass(frozen=True)
class RealWeights(Check):
    models: tuple[str, ...]

    def run(self, ctx: Context) -> Outcome:
        served = {m["name"]: m for m in ctx.models()["models"]}
        wrong = []
        for name in self.models:
            model = served.get(name)
            if model is None:
                wrong.append(f"{name}: not served")
            elif model.get("status") != "available":
                wrong.append(f"{name}: {model.get('status')} ({model.get('reason')})")
            elif not ((model.get("info") or {}).get("weights") or {}).get("real"):
                wrong.append(f"{name}: random weights")
        detail = "; ".join(wrong) if wrong else f"real weights: {', '.join(self.models)}"
        return Outcome(not wrong, detail)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latency(Check):
    """``ctx.requests`` sequential classify requests of one photo: p50 and p99 (and the budget, when given)."""

    asset: str

    def run(self, ctx: Context) -> Outcome:
        name, data = ctx.asset(self.asset)
        times, failed = [], 0
        for _ in range(max(1, ctx.requests)):
            start = time.perf_counter()
            response = ctx.client.post(ctx.url("/v1/classify"), **_upload(name, data, "image/jpeg"))
            times.append(1000 * (time.perf_counter() - start))
            failed += response.status_code != 200
        p50, p99 = percentile(times, 50), percentile(times, 99)
        detail = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(times)} requests"
        ok = failed == 0
        if failed:
            detail += f"; {failed} not answered 200"
        if ctx.max_p99_ms is not None and p99 > ctx.max_p99_ms:
            ok = False
            detail += f"; p99 over the {ctx.max_p99_ms:g} ms budget"
        return Outcome(ok, detail, {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "requests": len(times),
                                    "failed": failed})


CHECKS: tuple[Check, ...] = (
    Ready("ready"),
    TopClass("classify tench", TENCH, 0),
    TopClass("classify mud turtle", "imagenet/n01667114_mud_turtle.JPEG", 35),
    FaceCount("faces astronaut", "faces/astronaut.png", 1),
    FaceCount("faces obama", "faces/obama.jpg", 1),
    FaceCount("faces group of 4", "face_detector/linzaer_imgs_2.jpg", 4),
    Digit("digit 3", drawn("3"), digit=3, reliable=True),
    Digit("letter A is no digit", drawn("A"), digit=None, reliable=False),
    ErrorCase("no file -> 400", _no_file, 400, "missing_image"),
    ErrorCase("bad type -> 415", _pdf, 415, "unsupported_media_type"),
    ErrorCase("too large -> 413", _too_large, 413, "image_too_large"),
    ErrorCase("unknown route -> 404", _unknown_route, 404, "not_found"),
    RealWeights("real weights", REAL_WEIGHT_MODELS),
    Latency("classify latency", TENCH),
)


# -- running them ---------------------------------------------------------------------------------------------


def run_checks(ctx: Context, checks: tuple[Check, ...] = CHECKS) -> list[Result]:
    """Every check in order; when the server cannot be reached at all, the rest are not tried (FAIL)."""
    results: list[Result] = []
    unreachable: str | None = None
    for check in checks:
        if unreachable is not None:
            results.append(Result(check.name, False, f"not run: {unreachable}", 0.0))
            continue
        start = time.perf_counter()
        try:
            outcome = check.run(ctx)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            unreachable = f"cannot reach {ctx.base} ({type(exc).__name__})"
            outcome = Outcome(False, f"cannot reach {ctx.base}: {exc}")
        except httpx.HTTPError as exc:
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        except (CheckError, KeyError, TypeError, ValueError, IndexError) as exc:
            outcome = Outcome(False, str(exc) if isinstance(exc, CheckError) else f"unexpected answer: {exc!r}")
        results.append(Result(check.name, outcome.ok, outcome.detail, time.perf_counter() - start, outcome.data))
    return results


def run(args: Any) -> int:
    """``lensgraph client check``: the checks against ``args.url``, a table or ``--json``; 0 only when all pass."""
    from lensgraph import settings
    from lensgraph.cli.client_cmd import _table, auth_headers

    if args.images:
        print("error: client check takes no image arguments", file=sys.stderr)
        return 2
    assets = Path(args.assets).expanduser() if args.assets else settings.assets_dir()
    base = args.url.rstrip("/")
    with httpx.Client(timeout=args.timeout, headers=auth_headers(args.api_key)) as client:
        ctx = Context(base, client, assets, requests=args.requests, max_p99_ms=args.max_p99_ms)
        results = run_checks(ctx)
    passed = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"url": base, "passed": passed, "checks": [r.to_dict() for r in results]}, indent=2))
    else:
        rows = [(r.name, "PASS" if r.ok else "FAIL", f"{r.seconds:.2f}s", r.detail) for r in results]
        print(_table(("CHECK", "RESULT", "TIME", "DETAIL"), rows))
        failed = sum(not r.ok for r in results)
        print(f"  {len(results) - failed}/{len(results)} passed against {base}")
    return 0 if passed else 1
