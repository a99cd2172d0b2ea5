"""Security pieces of the service that need no Ray and no web framework: API keys (``keys``), the
per-client token bucket (``rate_limit``) and what client-facing messages may say (``redact``).
``pipelines/guard.py`` wires them into the ingress; docs/security.md describes the whole."""
