"""Every failure becomes JSON that says what was wrong. Bad input never becomes a 500.

Errors raised inside other replicas arrive wrapped by Ray; ``unwrap`` finds our own error inside,
so a decode failure in the Preprocessor reaches the client as the same 415/422/413 it would be
in-process.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lensgraph.errors import LensgraphError
from lensgraph.security.redact import redact_paths

logger = logging.getLogger("ray.serve")


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


def error_response(status: int, code: str, message: str, detail: dict | None = None,
                   retry_after_s: int | None = None) -> JSONResponse:
    body = {"error": code, "message": message}
    if detail:
        body["detail"] = detail
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(status_code=status, content=body, headers=headers)


def _ours(exc: LensgraphError) -> JSONResponse:
    message, detail = exc.message, exc.detail or None
    if exc.status >= 500:  # a server-side failure: no server paths to the client (the logs keep them)
        message = redact_paths(message)
        detail = {k: redact_paths(v) if isinstance(v, str) else v for k, v in detail.items()} if detail else None
    return error_response(exc.status, exc.code, message, detail, getattr(exc, "retry_after_s", None))


def install(app: FastAPI) -> None:
    @app.exception_handler(LensgraphError)
    async def _lensgraph(request: Request, exc: LensgraphError) -> JSONResponse:
        return _ours(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error_response(422, "invalid_request", "; ".join(problems), {"errors": exc.errors()})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; the API is described at /docs"
            return error_response(404, "not_found", message)
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ours = unwrap(exc)
        if ours is not None:
            return _ours(ours)
        name = type(exc).__name__
        if "BackPressure" in name or "Unavailable" in name:  # a model deployment's queue is full
            return error_response(503, "overloaded", f"the service is busy ({name}); retry shortly", retry_after_s=1)
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"unexpected {name}; the service logged it")
