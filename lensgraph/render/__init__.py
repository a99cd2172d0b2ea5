"""Pictures of the routes' answers, Ray-free: the decoded photo (HxWx3 RGB or HxW gray ``uint8``, as
lensgraph.imaging.decode gives it) and a route's JSON answer (exactly what lensgraph.routes.<route>.answer
returns) -> JPEG or PNG bytes.

    fmt = negotiate(render, request.headers.get("accept"))   # None: answer JSON as usual
    if fmt is not None:
        data, media = render("faces", decoded.pixels, body, fmt)
        return Response(data, media_type=media)

``digits`` needs the 10 probabilities (ask the model for them when a picture is wanted) and the 28x28
input the model saw (``lensgraph.routes.digits.prepare(...)``, or its ``.image``)::

    render("digits", pixels, body, fmt, probabilities=result["probabilities"], digit_image=prepared)

Each route has its own ``draw_<route>`` (an RGB array) and ``render_<route>`` (bytes) too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lensgraph.render.canvas import FORMATS, encode, normalise_format
from lensgraph.render.classify import draw_classify, render_classify
from lensgraph.render.detect import draw_detect, render_detect
from lensgraph.render.digits import draw_digits, render_digits
from lensgraph.render.faces import draw_faces, draw_landmarks, render_faces, render_landmarks
from lensgraph.render.media import media_type, negotiate, parse_accept, render_requested

__all__ = ["FORMATS", "ROUTES", "draw", "draw_classify", "draw_detect", "draw_digits", "draw_faces", "draw_landmarks",
           "media_type", "negotiate", "parse_accept", "render", "render_classify", "render_detect", "render_digits",
           "render_faces", "render_landmarks", "render_requested"]


def _digits(pixels: np.ndarray, answer: dict[str, Any], probabilities: Any = None, digit_image: Any = None
            ) -> np.ndarray:
    if digit_image is None:  # the route's own preprocessing of the photo: what the model saw
        from lensgraph.imaging.digits import prepare_array

        digit_image = prepare_array(pixels)
    return draw_digits(answer, probabilities, digit_image)


_DRAW: dict[str, Callable[..., np.ndarray]] = {
    "classify": draw_classify,
    "faces": draw_faces,
    "landmarks": draw_landmarks,
    "detect": draw_detect,
    "digits": _digits,
}
ROUTES = tuple(_DRAW)


def draw(route: str, pixels: np.ndarray, answer: dict[str, Any], **extra: Any) -> np.ndarray:
    """The picture of ``route``'s answer as an RGB array. ``extra``: ``names=True`` (faces, landmarks:
    landmark names), ``probabilities=`` and ``digit_image=`` (digits; without ``digit_image`` the photo
    is prepared again as the route does, which ignores an alpha channel)."""
    if route not in _DRAW:
        raise ValueError(f"no picture for route {route!r}; one of {list(ROUTES)}")
    return _DRAW[route](pixels, answer, **extra)


def render(route: str, pixels: np.ndarray, answer: dict[str, Any], fmt: str = "jpeg", **extra: Any
           ) -> tuple[bytes, str]:
    """(encoded picture, its media type) of ``route``'s answer; ``fmt`` ``jpeg`` or ``png``."""
    fmt = normalise_format(fmt)
    return encode(draw(route, pixels, answer, **extra), fmt), FORMATS[fmt]
