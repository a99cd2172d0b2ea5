"""Whether a request wants a picture instead of JSON, and in which format (``negotiate``):

- no ``render``, no image type in ``Accept``: JSON (None);
- ``render=true``: JPEG, or PNG when ``Accept`` prefers image/png;
- ``Accept: image/jpeg``: JPEG; ``Accept: image/png``: PNG;
- both: the higher q; on equal q PNG (it was asked for): ``image/png, image/jpeg`` -> PNG,
  ``image/jpeg, image/png;q=0.5`` -> JPEG;
- ``Accept: application/json, image/png;q=0.5`` (without ``render``): JSON, which the client prefers;
- ``Accept: image/*`` or ``*/*``: JSON, no image type was named.

Only ``image/jpeg`` (``image/jpg``, ``image/pjpeg``) and ``image/png`` are images here; ``q=0`` refuses a
type. ``render`` is a bool, None, or the query string's text (``true``/``1``/``yes``/``on``,
``false``/``0``/``no``/``off``/empty); other text is a 422 (InvalidRequest).
"""

from __future__ import annotations

from lensgraph.errors import InvalidRequest
from lensgraph.render.canvas import FORMATS

__all__ = ["media_type", "negotiate", "parse_accept", "render_requested"]

_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/pjpeg": "jpeg"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def media_type(fmt: str) -> str:
    """``jpeg`` -> ``image/jpeg``, ``png`` -> ``image/png``."""
    return FORMATS[fmt]


def render_requested(flag: bool | str | None) -> bool:
    """The ``render`` query value as a bool (None: not given)."""
    if flag is None or isinstance(flag, bool):
        return bool(flag)
    text = str(flag).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidRequest(f"render must be true or false, got {flag!r}")


def parse_accept(header: str | None) -> dict[str, float]:
    """``Accept`` -> {media range (lower case): q}, the highest q where a range is repeated; entries with a
    malformed q are ignored."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        kind = fields[0].lower()
        if "/" not in kind:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if q < 0 or q > 1 or q != q:
            continue
        out[kind] = max(q, out.get(kind, 0.0))
    return out


def negotiate(render_flag: bool | str | None, accept_header: str | None) -> str | None:
    """``"jpeg"`` or ``"png"`` when the request wants a picture, None for JSON (see the module's table)."""
    accepted = parse_accept(accept_header)
    images: dict[str, float] = {}
    for kind, fmt in _IMAGE_TYPES.items():
        if accepted.get(kind, 0.0) > 0:
            images[fmt] = max(images.get(fmt, 0.0), accepted[kind])
    wanted = None
    if images:
        best = max(images.values())
        wanted = "png" if images.get("png") == best else "jpeg"
    if render_requested(render_flag):
        return wanted or "jpeg"
    if wanted is None or accepted.get("application/json", 0.0) > images[wanted]:
        return None
    return wanted
