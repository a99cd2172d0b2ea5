"""A request's id, and the one log line an error answer gets: the link between a client's report and our log.

Ray Serve gives every HTTP request an id, the client's ``X-Request-ID`` or one it makes up, puts it in the
request's headers (so the app sees it) and sends it back as ``X-Request-ID`` on every response, refusals of
pipelines/admission.py and pipelines/guard.py included (they never reach FastAPI). The log line of an
error carries the same id: Serve's own TEXT lines carry none while the access log is off, hence the
explicit ``request_id=`` field.

Bad input is expected, so a 4xx is one line (status, code, id, what was wrong) and never a traceback; an
unexpected failure (500) logs its traceback with the id; a 503/504 (a model unavailable, overloaded, a
deadline) is one warning line, since the cause is known and a traceback would say nothing more.
Load-shedding refusals (admission's 503, the guard's 429) are counted, not logged: a line each would spend
the CPU that refusing early saves.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("ray.serve")

HEADER = b"x-request-id"
_MAX_MESSAGE = 300
_KNOWN_CAUSE = frozenset({503, 504})  # unavailable, overloaded, past the deadline: one warning line


def request_id(scope: dict) -> str:
    """The id Serve's X-Request-ID response header carries: the request's header, which Serve sets when the
    client sent none; Serve's own id when the client sent an empty one; ``-`` outside Serve (no id)."""
    for name, value in scope.get("headers") or ():
        if name == HEADER:
            if value:
                return value.decode("latin-1")
            break
    try:
        from ray.serve import context  # the replica's context: set by Serve for the request being handled

        return context._get_serve_request_context().request_id or "-"
    except Exception:  # outside a replica, or Serve changed its private API: no id rather than no answer
        return "-"


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """A client's input can reach an error message: no line breaks, and bounded."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def log_error(scope: dict, status: int, code: str, message: str, exc: BaseException | None = None) -> str:
    """Log one answered error (see the module's docstring for which gets what); returns the request id."""
    rid = request_id(scope)
    line = "%s %s -> %d %s request_id=%s: %s"
    args = (scope.get("method", "-"), scope.get("path", "-"), status, code, rid, one_line(message))
    if status >= 500 and status not in _KNOWN_CAUSE:
        logger.error(line, *args, exc_info=exc)
    elif status >= 500:
        logger.warning(line, *args)
    else:
        logger.info(line, *args)
    return rid
