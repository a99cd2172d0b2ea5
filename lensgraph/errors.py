"""Errors the core raises on bad input, each carrying the HTTP status it maps to.

The core never imports a web framework; the ingress turns these into JSON responses, so a
caller always learns what was wrong and the service keeps running.
"""

from __future__ import annotations


class LensgraphError(Exception):
    """Base class: ``status`` is the HTTP status the ingress answers with."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class MissingImage(LensgraphError):
    status, code = 400, "missing_image"


class InvalidRequest(LensgraphError):
    status, code = 422, "invalid_request"


class ImageTooLarge(LensgraphError):
    status, code = 413, "image_too_large"


class UnsupportedImage(LensgraphError):
    status, code = 415, "unsupported_media_type"


class CorruptImage(LensgraphError):
    status, code = 422, "undecodable_image"


class ModelUnavailable(LensgraphError):
    status, code = 503, "model_unavailable"


class UnknownModel(LensgraphError):
    """``?model=`` names no served model (or one of another task)."""

    status, code = 404, "unknown_model"


class Overloaded(LensgraphError):
    """The service is at its limit: refused at once, with when to try again (``Retry-After``)."""

    status, code = 503, "overloaded"
    retry_after_s = 1


class DeadlineExceeded(LensgraphError):
    """The request's deadline (server default or the client's ``X-Request-Timeout``) passed first."""

    status, code = 504, "deadline_exceeded"


class WeightsError(LensgraphError):
    """A state dict or weight file does not fit the architecture or cannot be found."""

    status, code = 500, "weights_error"


class WeightsNotFound(WeightsError):
    """The weights a model card asks for are not where it says; the message says what to provide."""

    code = "weights_not_found"


class ChecksumMismatch(WeightsError):
    code = "checksum_mismatch"
