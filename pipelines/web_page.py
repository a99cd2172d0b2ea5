"""The web page's routes on the ingress app: ``GET /`` and its script and style sheet (lensgraph/web).

Read once when the app is built and answered from memory, with a strict Content-Security-Policy (the page
loads only its own files). Not in the OpenAPI schema (``include_in_schema=False``): /docs and the schema
fuzzer (tests/integration/test_bad_input.py) describe the API, not the page. Open with API keys on
(pipelines/guard.py); the API calls the page makes need the key.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from lensgraph import web

HEADERS = {
    "Cache-Control": "no-cache",  # revalidated each time, so a new version of the service shows its own page
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": web.CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


def install(app: FastAPI) -> None:
    for path, (name, media_type) in web.FILES.items():
        app.add_api_route(path, _endpoint(web.read(name), media_type), methods=["GET"], include_in_schema=False,
                          name=f"web page: {name}")


def _endpoint(body: bytes, media_type: str):
    async def page() -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return page
