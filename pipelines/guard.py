"""API keys and per-client rate limits in front of every route: a pure ASGI middleware on the ingress app.

Both are off by default, and then each request costs one attribute test here. With keys on
(``$LENSGRAPH_API_KEYS_FILE``) a request needs ``Authorization: Bearer <key>``: none -> 401, a key
not in the file -> 403. With a rate (``rate_limit_per_s`` in the Preprocessor's user_config) each API
key, or each client address when keys are off, gets a token bucket on this replica: over it -> 429
with ``Retry-After``. Refusals are answered here, before FastAPI routes anything or reads the body; a
401/403 logs one line (pipelines/request_ids.py), a 429 none (load shedding: a line each would cost what
refusing early saves).

``/healthz``, ``/readyz``, ``/v2/health/live`` and ``/v2/health/ready`` (probes), ``/docs``,
``/openapi.json`` (the API's description, no data) and the web page (``/`` and its files, lensgraph/web: it
holds no data, and sends the key the user pastes with each API call) are always open; ``/v1/models`` (versions, settings, process ids) needs a key like the model routes.
The logic is Ray-free (lensgraph.security); docs/security.md says what is protected and how.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from lensgraph import web
from lensgraph.security import keys as api_keys
from lensgraph.security.rate_limit import TokenBucketLimiter
from pipelines.errors import error_response, is_v2
from pipelines.request_ids import log_error

logger = logging.getLogger("ray.serve")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready",
                        "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", *web.PAGE_PATHS})
MAX_CLIENTS = 10_000  # buckets kept per replica (lensgraph.security.rate_limit)
_BEARER = b"bearer "


class Guard:
    """What the middleware enforces in this process (one ingress replica per process under Serve)."""

    def __init__(self) -> None:
        self.keys: api_keys.KeySet | None = None
        self.limiter: TokenBucketLimiter | None = None
        self.client_header: bytes | None = None
        self.active = False
        self._configured = False

    def configure(self, settings: Any, environ: dict[str, str] | None = None) -> None:
        """Apply the Preprocessor's settings and (re)read the key file.

        At replica start a broken key file raises, so the replica fails instead of serving without
        the keys it was asked to check; on a later reconfigure the keys in use are kept and it is logged."""
        try:
            keys = api_keys.from_environment(environ)
        except api_keys.KeyFileError:
            if not self._configured:
                raise
            logger.exception("API keys: keeping the %d key(s) in use", len(self.keys or ()))
            keys = self.keys
        if keys is not None and (self.keys is None or keys.keys != self.keys.keys):
            logger.info("API keys: %d key(s) from $%s; requests need 'Authorization: Bearer <key>'",
                        len(keys), api_keys.ENV)
        self.keys = keys

        rate = float(getattr(settings, "rate_limit_per_s", 0.0) or 0.0)
        burst = int(getattr(settings, "rate_limit_burst", 0) or 0) or max(1, math.ceil(rate))
        if rate <= 0:
            self.limiter = None
        elif self.limiter is None or (self.limiter.rate, self.limiter.burst) != (rate, float(burst)):
            self.limiter = TokenBucketLimiter(rate, burst, MAX_CLIENTS)
        header = getattr(settings, "rate_limit_client_header", None)
        self.client_header = header.lower().encode("latin-1") if header else None
        self.active = self.keys is not None or self.limiter is not None
        self._configured = True

    def client_of(self, scope: dict) -> str:
        """The client's address for its rate limit when keys are off (docs/security.md, "Client address")."""
        if self.client_header is not None:
            for name, value in scope["headers"]:
                if name == self.client_header:
                    return value.decode("latin-1").rsplit(",", 1)[-1].strip()  # what the nearest proxy added
        client = scope.get("client")
        return client[0] if client else "unknown"


GUARD = Guard()


class GuardMiddleware:
    """``app.add_middleware(GuardMiddleware)``: enforces ``GUARD`` (or the Guard it is given)."""

    def __init__(self, app, guard: Guard | None = None) -> None:
        self.app = app
        self.guard = guard or GUARD

    async def __call__(self, scope, receive, send) -> None:
        guard = self.guard
        if not guard.active or scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path in OPEN_PATHS:
            return await self.app(scope, receive, send)

        client: object = None
        if guard.keys is not None:
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value
                    break
            token = header[7:].strip() if header is not None and header[:7].lower() == _BEARER else b""
            if not token:
                return await _unauthorized(scope, receive, send)
            key = guard.keys.check(token)
            if key is None:
                message = "this API key is not valid for this service"
                log_error(scope, 403, "forbidden", message)
                return await error_response(403, "forbidden", message, v2=is_v2(scope))(scope, receive, send)
            client = key.digest
        limiter = guard.limiter
        if limiter is not None:
            if client is None:
                client = guard.client_of(scope)
            wait = limiter.take(client)
            if wait:
                return await _rate_limited(limiter, wait, guard.keys is not None, is_v2(scope))(scope, receive, send)
        return await self.app(scope, receive, send)


async def _unauthorized(scope, receive, send) -> None:
    message = "this API needs a key: send the header 'Authorization: Bearer <key>'"
    log_error(scope, 401, "unauthorized", message)
    response = error_response(401, "unauthorized", message, v2=is_v2(scope))
    response.headers["WWW-Authenticate"] = 'Bearer realm="lensgraph"'
    await response(scope, receive, send)


def _rate_limited(limiter: TokenBucketLimiter, wait_s: float, per_key: bool, v2: bool = False):
    seconds = limiter.retry_after_header(wait_s)
    who = "API key" if per_key else "client address"
    return error_response(
        429, "rate_limited",
        f"over the rate limit of {limiter.rate:g} requests/s (bursts of {limiter.burst:g}) for this {who} "
        f"on this ingress replica; retry after {seconds} s",
        retry_after_s=seconds, v2=v2,
    )

