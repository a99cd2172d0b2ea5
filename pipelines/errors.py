"""Every failure becomes JSON that says what was wrong. Bad input never becomes a 500.

Errors raised inside other replicas arrive wrapped by Ray; ``unwrap`` finds our own error inside,
so a decode failure in the Preprocessor reaches the client as the same 415/422/413 it would be
in-process. Every error answered here is logged once, with the request's id (pipelines/request_ids.py).

Under ``/v2`` (the Open Inference Protocol) the same errors keep their status and log line but take the
protocol's form, ``{"error": "<message>"}``, which its clients (tritonclient) read; /v1 keeps its own.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lensgraph.errors import LensgraphError
from lensgraph.security.redact import redact_paths
from pipelines.request_ids import log_error


def unwrap(exc: BaseException) -> LensgraphError | None:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, LensgraphError):
            return current
        cause = getattr(current, "cause", None)  # RayTaskError keeps the original here
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
        seen += 1
    return None


def is_v2(scope: dict) -> bool:
    """Whether a request is the Open Inference Protocol's (its errors are ``{"error": "<message>"}``)."""
    path = scope.get("path") or ""
    root = scope.get("root_path")
    if root and path.startswith(root):
        path = path[len(root):]
    return path == "/v2" or path.startswith("/v2/")


def error_response(status: int, code: str, message: str, detail: dict | None = None,
                   retry_after_s: int | None = None, v2: bool = False) -> JSONResponse:
    if v2:
        body: dict = {"error": message}
    else:
        body = {"error": code, "message": message}
        if detail:
            body["detail"] = detail
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(status_code=status, content=body, headers=headers)


def logged(request: Request, status: int, code: str, message: str, exc: BaseException | None = None,
           detail: dict | None = None, retry_after_s: int | None = None) -> JSONResponse:
    """The error's JSON answer, after its one log line."""
    log_error(request.scope, status, code, message, exc)
    return error_response(status, code, message, detail, retry_after_s, v2=is_v2(request.scope))


def _ours(request: Request, exc: LensgraphError) -> JSONResponse:
    log_error(request.scope, exc.status, exc.code, exc.message, exc)  # the log keeps the unredacted message
    message, detail = exc.message, exc.detail or None
    if exc.status >= 500:  # a server-side failure: no server paths to the client (the logs keep them)
        message = redact_paths(message)
        detail = {k: redact_paths(v) if isinstance(v, str) else v for k, v in detail.items()} if detail else None
    return error_response(exc.status, exc.code, message, detail, getattr(exc, "retry_after_s", None),
                          v2=is_v2(request.scope))


def install(app: FastAPI) -> None:
    @app.exception_handler(LensgraphError)
    async def _lensgraph(request: Request, exc: LensgraphError) -> JSONResponse:
        return _ours(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return logged(request, 422, "invalid_request", "; ".join(problems), detail={"errors": exc.errors()})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; the API is described at /docs"
            return logged(request, 404, "not_found", message)
        if exc.status_code == 405:
            return logged(request, 405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        return logged(request, exc.status_code, "http_error", str(exc.detail), exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ours = unwrap(exc)
        if ours is not None:
            return _ours(request, ours)
        name = type(exc).__name__
        if "BackPressure" in name or "Unavailable" in name:  # a model deployment's queue is full
            return logged(request, 503, "overloaded", f"the service is busy ({name}); retry shortly", retry_after_s=1)
        log_error(request.scope, 500, "internal_error", f"unexpected {name}: {exc}", exc)  # with the traceback
        return error_response(500, "internal_error", f"unexpected {name}; the service logged it",
                              v2=is_v2(request.scope))
