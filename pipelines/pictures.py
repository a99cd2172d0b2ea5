"""Answers as pictures: ``?render=true`` or ``Accept: image/jpeg|image/png`` on a /v1 image route returns the
photo with the answer drawn on it (lensgraph/render), instead of the JSON. Errors stay JSON."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from lensgraph.render import negotiate, render

PICTURE_CONTENT = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                   "image/png": {"schema": {"type": "string", "format": "binary"}}}


def wanted(render_flag: bool, request: Request) -> str | None:
    """``"jpeg"``/``"png"`` when the request asks for a picture, None for JSON."""
    return negotiate(render_flag, request.headers.get("accept"))


def picture(route: str, fmt: str, pixels: np.ndarray, body: dict[str, Any], extra: dict[str, Any]) -> Response:
    data, media_type = render(route, pixels, body, fmt, **extra)
    return Response(content=data, media_type=media_type)
