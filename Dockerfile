# syntax=docker/dockerfile:1.7
# lensgraph in one image: the Ray Serve application, its runtime dependencies and (by default) the
# model repository. CPU by default; the GPU variant swaps the base for CUDA and onnxruntime for
# onnxruntime-gpu. docs/deploy.md explains every argument; in short:
#
#   docker build --build-context assets=../shared/assets -t lensgraph:0.1.0-cpu .
#   docker build --build-context assets=../shared/assets --build-arg VARIANT=gpu -t lensgraph:0.1.0-gpu .
#   docker build --build-arg MODELS=mount -t lensgraph:0.1.0-cpu-nomodels .   # repository mounted at run time
#
# Stages: models-build (torch, with the assets bind-mounted for one RUN and never copied) writes the
# model repository; venv installs the runtime dependencies only (no torch); runtime is what runs.
# The runtime image has no ENTRYPOINT: KubeRay replaces the command with its own `ray start`, and a
# plain `docker run` runs the CMD, `lensgraph run` (`serve run` that drains on SIGTERM) of the variant's config.

ARG VARIANT=cpu
ARG MODELS=build
# One Python patch version for both variants: Ray refuses nodes whose Python versions differ, and a
# cluster mixes the CPU image (head, CPU workers) with the GPU image (GPU workers).
ARG PYTHON_VERSION=3.11.14

# The assets (weights, labels) for the model build. Empty unless given with
# `--build-context assets=PATH`, which replaces this stage; they are only ever bind-mounted.
FROM scratch AS assets

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---------------------------------------------------------------------------------------------
# Python bases. Both provide python3.11 on PATH and the variant's default Serve config.
FROM python:${PYTHON_VERSION}-slim-bookworm AS python-cpu
ENV LENSGRAPH_SERVE_CONFIG=serve_config.yaml

# onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9. The CUDA images have no Python 3.11, so
# uv installs the same CPython patch release as the CPU image into /opt/python.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS python-gpu
ARG PYTHON_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    LENSGRAPH_SERVE_CONFIG=configs/profiles/gpu.yaml
RUN --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \
    uv python install "${PYTHON_VERSION}" \
    && ln -s "$(uv python find "${PYTHON_VERSION}")" /usr/local/bin/python3.11 \
    && ln -s python3.11 /usr/local/bin/python3 \
    && python3.11 -c "import platform, sys; assert platform.python_version() == sys.argv[1]" "${PYTHON_VERSION}"

# The common runtime base: a non-root user with uid 1000 (the uid Ray's own images use). The
# Ubuntu 24.04 base ships a user 'ubuntu' with that uid; it is replaced.
# (DL3006 wants a tag: python-${VARIANT} is one of the two stages above, not an image.)
# hadolint ignore=DL3006
FROM python-${VARIANT} AS runtime-base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if id ubuntu >/dev/null 2>&1; then userdel ubuntu && rm -rf /home/ubuntu; fi \
    && useradd --create-home --uid 1000 --user-group --shell /bin/bash ray

# ---------------------------------------------------------------------------------------------
# The model repository, built with torch (CPU wheels: export runs on the CPU and the ONNX it
# writes is the same for both variants). Nothing of this stage but the repository is kept.
FROM python:${PYTHON_VERSION}-slim-bookworm AS models-build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/build-venv/bin:$PATH
WORKDIR /src
RUN python3.11 -m venv /opt/build-venv
COPY pyproject.toml README.md ./
COPY lensgraph/ lensgraph/
COPY deployments/ deployments/
COPY pipelines/ pipelines/
# (DL3013 wants pins on the command line: they are in pyproject.toml, which this installs.)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu ".[build]"
COPY configs/ configs/
COPY weights/ weights/
RUN --mount=type=bind,from=assets,target=/assets \
    if [ -z "$(ls -A /assets)" ]; then \
        echo "no assets: build with --build-context assets=PATH (docs/deploy.md), or --build-arg MODELS=mount" >&2; \
        exit 1; \
    fi \
    && LENSGRAPH_ASSETS=/assets lensgraph models build --strict \
        --config configs/models.yaml --repository /opt/lensgraph/model_repository

# MODELS=mount: an empty repository folder; mount the real one there at run time.
FROM scratch AS models-mount
WORKDIR /opt/lensgraph/model_repository

# (DL3006 wants a tag: models-${MODELS} is one of the two stages above, not an image.)
# hadolint ignore=DL3006
FROM models-${MODELS} AS models

# ---------------------------------------------------------------------------------------------
# Runtime dependencies in a venv built on the runtime base itself, so its interpreter path holds.
FROM runtime-base AS venv
ARG VARIANT
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN "$(readlink -f "$(command -v python3.11)")" -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY lensgraph/ lensgraph/
COPY deployments/ deployments/
COPY pipelines/ pipelines/
# GPU: onnxruntime-gpu of the very version pyproject.toml pins for onnxruntime (both install the
# same `onnxruntime` module, so the CPU build is removed first). torch must never get in here.
RUN pip install --no-cache-dir . \
    && if [ "${VARIANT}" = gpu ]; then \
        ort_version="$(pip show onnxruntime | sed -n 's/^Version: //p')" \
        && pip uninstall --yes onnxruntime \
        && pip install --no-cache-dir "onnxruntime-gpu==${ort_version}"; \
    fi \
    && if pip show torch >/dev/null 2>&1; then echo "torch is in the runtime venv" >&2; exit 1; fi

# ---------------------------------------------------------------------------------------------
FROM runtime-base AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="lensgraph" \
      org.opencontainers.image.description="Multi-model vision inference on Ray Serve (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=venv /opt/venv /opt/venv
COPY --from=models /opt/lensgraph/model_repository /opt/lensgraph/model_repository
WORKDIR /opt/lensgraph
COPY serve_config.yaml ./
COPY configs/ configs/
# KubeRay starts Ray through `bash -l`, whose /etc/profile resets PATH on Debian: keep the venv on it.
RUN echo "export PATH=/opt/venv/bin:\$PATH" > /etc/profile.d/lensgraph.sh
# The Serve process environment: exactly configs/serve.env (tests/unit/test_deploy_files.py checks).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LENSGRAPH_MODEL_REPOSITORY=/opt/lensgraph/model_repository \
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
    RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH=33554432 \
    RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE=1 \
    RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5 \
    RAY_SERVE_METRICS_EXPORT_INTERVAL_MS=1000 \
    RAY_DASHBOARD_AGENT_LOOP_MONITOR_INTERVAL_S=5 \
    RAY_DASHBOARD_AGGREGATOR_AGENT_CHECK_MAIN_THREAD_LIVENESS_INTERVAL_SECONDS=1 \
    RAY_SERVE_HAPROXY_METRICS_REPORT_INTERVAL_S=30 \
    RAY_raylet_report_resources_period_milliseconds=1000 \
    RAY_task_events_report_interval_ms=5000 \
    FORWARDED_ALLOW_IPS="" \
    RAY_SERVE_HAPROXY_RETRY_ON="conn-failure empty-response"
USER 1000:1000
# 8000 Serve HTTP, 8265 Ray dashboard, 8080 Prometheus metrics, 6379 GCS (head)
EXPOSE 8000 8265 8080 6379
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["/bin/bash", "-c", "exec lensgraph run \"${LENSGRAPH_SERVE_CONFIG}\""]
