"""The seed-style baseline: one FastAPI + uvicorn process calling the same core per request.

What the project's original assignments built: no batching, no separate stages, plain ``def``
endpoints (FastAPI runs them on its thread pool, so concurrent requests share the ONNX Runtime
sessions). Same runners and transforms as lensgraph (lensgraph.inference.local), so the
benchmark compares serving architectures, not models.

    python -m benchmarks.baseline_app --port 8100 [--threads 2]
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI, Request

from lensgraph import settings
from lensgraph.inference.local import LocalPipelines


def create_app(threads: int) -> FastAPI:
    app = FastAPI(title="lensgraph seed-style baseline")
    local = LocalPipelines(settings.model_repository_dir(), threads=threads)

    @app.post("/v1/classify")
    def classify(body: bytes = _body()) -> dict:
        return local.classify([body], top_k=2)[0]

    @app.post("/v1/faces")
    def faces(body: bytes = _body()) -> dict:
        return local.faces([body])[0]

    @app.post("/v1/digits")
    def digits(body: bytes = _body()) -> dict:
        return local.digits([body], samples=30)[0]

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def _body():
    """The raw request body as bytes (an async dependency, so the sync endpoints get plain bytes)."""
    from fastapi import Depends

    async def read(request: Request) -> bytes:
        return await request.body()

    return Depends(read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BASELINE_THREADS", "2")))
    args = parser.parse_args()
    uvicorn.run(create_app(args.threads), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
