"""The HTTP side of the Open Inference Protocol (/v2) at the ingress: reading a request's body (capped),
answering with JSON or JSON + binary tensor data, and how the routes describe this in OpenAPI.

The rules of the protocol itself (signatures, request checks, responses) are Ray-free in
lensgraph.protocol.v2; the routes are in pipelines/ingress.py, next to /v1's.
"""

from __future__ import annotations

import copy

from starlette.requests import Request
from starlette.responses import Response

from lensgraph.protocol.v2 import DATATYPES, HEADER_LENGTH, ProtocolError, RequestTooLarge
from pipelines.http_inputs import REQUEST_ID_HEADER, TIMEOUT_HEADER

# The JSON of a request may be several times the tensor bytes it carries (a uint8 is up to 4 characters);
# the tensors themselves are capped at the ingress's max_upload_bytes (lensgraph.protocol.v2.parse_request).
JSON_EXPANSION = 4
BODY_SLACK = 64 * 1024


def body_limit(max_tensor_bytes: int) -> int:
    return JSON_EXPANSION * max_tensor_bytes + BODY_SLACK


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused past ``limit`` (from Content-Length before reading, else while reading)."""
    encoding = request.headers.get("content-encoding")
    if encoding and encoding.strip().lower() != "identity":
        raise ProtocolError(f"Content-Encoding {encoding[:32]!r} is not supported; send the request uncompressed")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request's {int(declared)} bytes are more than the {limit} accepted; "
                              f"send fewer rows per request")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge(f"the request is more than the {limit} bytes accepted; send fewer rows per request")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise ProtocolError('the request has no body; send {"inputs": [{"name", "shape", "datatype", "data"}]}')
    return body


def infer_response(content: bytes, header_length: int | None) -> Response:
    """JSON alone, or (binary outputs) JSON then the tensors' bytes, with the JSON's length in a header."""
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})


# -- OpenAPI ------------------------------------------------------------------------------------------------
_TENSOR_PARAMETERS = {"type": "object", "properties": {
    "binary_data_size": {"type": "integer", "minimum": 0,
                         "description": "the tensor is sent as this many bytes after the JSON (binary extension)"}}}
INFER_BODY = {
    "required": True,
    "description": ("an inference request (the Open Inference Protocol): JSON, or JSON followed by the inputs' "
                    f"bytes, with the JSON's length in the {HEADER_LENGTH} header (Triton's binary tensor extension)"),
    "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "description": "echoed in the response"},
                "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
                "inputs": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "datatype": {"type": "string", "enum": sorted(set(DATATYPES.values()))},
                        "parameters": _TENSOR_PARAMETERS,
                        "data": {"type": "array", "description": "the values, flat (row-major) or nested as the shape"},
                    }}},
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"},
                                   "parameters": {"type": "object",
                                                  "properties": {"binary_data": {"type": "boolean"}}}}}},
            }}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
HEADER_LENGTH_HEADER = {
    "name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "integer", "minimum": 0},
    "description": "with binary tensor data: the length of the JSON at the start of the body",
}
INFER_ANSWER = {
    "description": (f"the outputs as JSON; with binary outputs (application/octet-stream) the JSON response, its "
                    f"length in the {HEADER_LENGTH} header, then the outputs' bytes"),
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def route_extra(infer: bool) -> dict:
    """``openapi_extra`` of a /v2 route: the request id header; the body and headers infer reads by hand."""
    if not infer:
        return copy.deepcopy({"parameters": [REQUEST_ID_HEADER]})
    return copy.deepcopy({"parameters": [REQUEST_ID_HEADER, TIMEOUT_HEADER, HEADER_LENGTH_HEADER],
                          "requestBody": INFER_BODY})
