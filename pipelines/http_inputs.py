"""Getting image bytes out of a request: multipart ``file``, a raw ``image/*`` body, or JSON base64.

The upload limit is enforced here, at the ingress, before anything is passed on: a handle call
carrying more than the replicas' gRPC message limit fails with a bare 500 (measured), so an
oversized upload must become a 413 here and never reach a handle.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json

from starlette.datastructures import UploadFile
from starlette.requests import Request

from lensgraph.errors import ImageTooLarge, InvalidRequest, MissingImage, UnsupportedImage

HOW_TO_SEND = (
    "send the image as multipart/form-data field 'file', as a raw body with Content-Type image/*, "
    "or as JSON {\"image\": \"<base64>\"}"
)
_MULTIPART_SLACK = 64 * 1024


def _too_large(size: int, limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"upload of {size} bytes is over the {limit}-byte limit; send a smaller image", limit=limit)


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    b64_limit = max_bytes * 4 // 3 + 4096
    envelope = {"multipart/form-data": max_bytes + _MULTIPART_SLACK, "application/json": b64_limit}.get(
        content_type, max_bytes
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > envelope:
        raise _too_large(int(declared), max_bytes)

    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16, max_part_size=max_bytes + 1)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise MissingImage(f"no 'file' field in the form; {HOW_TO_SEND}")
        data = await upload.read(max_bytes + 1)
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        data = await _read_capped(request, max_bytes)
    elif content_type == "application/json":
        data = _from_json(await _read_capped(request, b64_limit))
    elif not content_type:
        raise MissingImage(f"no Content-Type and no image; {HOW_TO_SEND}")
    else:
        raise UnsupportedImage(f"Content-Type {content_type!r} is not accepted; {HOW_TO_SEND}")
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    if not data:
        raise MissingImage(f"the image is empty; {HOW_TO_SEND}")
    return data


def request_deadline(request: Request, default_s: float) -> float:
    """Seconds this request may take: the server's default, or less when the client's
    ``X-Request-Timeout`` header (seconds) asks for less."""
    value = request.headers.get("x-request-timeout")
    if value is None:
        return default_s
    try:
        asked = float(value)
    except ValueError:
        raise InvalidRequest(f"X-Request-Timeout must be a number of seconds, got {value!r}") from None
    if not asked > 0 or asked != asked:
        raise InvalidRequest(f"X-Request-Timeout must be > 0 seconds, got {value!r}")
    return min(asked, default_s)


def _from_json(body: bytes) -> bytes:
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); {HOW_TO_SEND}")
    except RecursionError:  # '[' * 100000: the parser's recursion limit, which was a 500
        raise InvalidRequest(f"body is JSON nested too deeply; {HOW_TO_SEND}") from None
    if not isinstance(payload, dict) or not payload.get("image"):
        raise MissingImage(f"JSON body has no 'image' field; {HOW_TO_SEND}")
    text = payload["image"]
    if not isinstance(text, str):
        raise InvalidRequest("'image' must be a base64 string")
    if text.startswith("data:") and "," in text:  # data URLs from browsers
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"'image' is not valid base64: {exc}") from exc


# -- how the routes describe this in OpenAPI ----------------------------------------------------------
# The routes take a Request (the body is read here, capped), so FastAPI cannot infer a requestBody; it is
# declared by hand, so /docs shows what to send and a schema fuzzer (make fuzz) generates bodies.
_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_BODY = {
    "required": True,
    "description": "one image: " + HOW_TO_SEND,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "image/*": _BINARY,
        "application/octet-stream": _BINARY,
        "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {"image": {
            "type": "string", "format": "byte", "description": "base64, or a data URL (data:image/png;base64,...)"}}}},
    },
}
REQUEST_ID_HEADER = {
    "name": "X-Request-ID", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "the request's id, echoed in the X-Request-ID response header and in the server's log "
                   "line; generated when absent",
}
TIMEOUT_HEADER = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "description": "seconds this request may take (capped at the server's request_timeout_s); past it: 504",
}


def openapi_extra(image: bool) -> dict:
    """``openapi_extra`` of a route: the request id header on every route; the image body and the
    deadline header on the model routes."""
    if not image:
        return copy.deepcopy({"parameters": [REQUEST_ID_HEADER]})
    return copy.deepcopy({"parameters": [REQUEST_ID_HEADER, TIMEOUT_HEADER], "requestBody": IMAGE_BODY})
