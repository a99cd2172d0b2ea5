"""What every model deployment shares: an ONNX Runtime session from the model repository, dynamic
batching through ``@serve.batch``, live batching settings from ``user_config``, a real health check.

A model deployment subclasses ``BatchedModel`` and names its settings class and its runner
(lensgraph.inference): the Ray-free object that owns the session and implements
``run_batch(items) -> results``. The deployment adds batching, live settings and health.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from lensgraph import settings as lg_settings
from lensgraph.errors import ModelUnavailable
from lensgraph.inference.model_runner import ModelRunner
from lensgraph.repository.store import ModelEntry, find_model
from lensgraph.runtime.session import SessionConfig, default_threads

logger = logging.getLogger("ray.serve")

# Upper bound of ``inference_threads``: Serve fixes max_concurrent_batches when the class is defined;
# the live setting is the number of threads that run the formed batches.
MAX_CONCURRENT_BATCHES = 2


class ModelSettings(BaseModel):
    """``user_config`` of a model deployment; changes apply to live replicas without a restart."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.0, ge=0.0, le=1.0, description=(
        "0: a batch is whatever queued while the previous one ran (no added latency when idle)"))
    inference_threads: int = Field(1, ge=1, le=MAX_CONCURRENT_BATCHES, description=(
        "batches run at once, each on its own thread over the same session"))
    intra_op_threads: int | None = Field(None, ge=1, le=256, description="default: the replica's num_cpus")
    inter_op_threads: int = Field(1, ge=1, le=64)
    graph_optimization: str = Field("all", pattern="^(disable|basic|extended|all)$")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])

    def session_config(self) -> SessionConfig:
        return SessionConfig(
            intra_op_threads=self.intra_op_threads or default_threads(),
            inter_op_threads=self.inter_op_threads,
            graph_optimization=self.graph_optimization,
            providers=tuple(self.providers),
        )


class BatchedModel:
    """Base of the model deployments (not a deployment itself)."""

    settings_class: ClassVar[type[ModelSettings]] = ModelSettings
    runner_class: ClassVar[type[ModelRunner]] = ModelRunner

    def __init__(self, model_name: str, repository: str | None = None, version: int | None = None) -> None:
        self.model_name = model_name
        self.entry: ModelEntry | None = None
        self.unavailable_reason = ""
        try:
            self.entry = find_model(lg_settings.model_repository_dir(repository), model_name, version)
        except ModelUnavailable as exc:
            # Stay up without the model: its routes answer 503 with this reason, the others keep serving.
            self.unavailable_reason = exc.message
            logger.warning("%s unavailable: %s", model_name, exc.message)
        self.settings = self.settings_class()
        self.runner: ModelRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.items_served = 0
        self.in_flight = 0  # items queued or in a batch on this replica (reported by info())
        self.started_at = time.time()
        self._apply(self.settings)

    # -- configuration -------------------------------------------------------------------------
    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Serve calls this with ``user_config`` at start and on every config change."""
        self._apply(self.settings_class.model_validate(user_config or {}))

    def _apply(self, new: ModelSettings) -> None:
        if self.entry is not None:
            if self.runner is None:
                self.runner = self.runner_class(self.entry, new.session_config())
            else:
                self.runner.configure(new.session_config())
            self.configure_runner(self.runner, new)
        if self._executor is None or new.inference_threads != self.settings.inference_threads:
            # Batches run on these threads (ONNX Runtime releases the GIL) while the event loop keeps
            # queueing; several threads with one intra-op thread each avoid ORT's own thread-pool
            # synchronisation, which costs CPU on a small, busy node (docs/serving.md).
            old, self._executor = self._executor, ThreadPoolExecutor(new.inference_threads, f"{self.model_name}-ort")
            if old is not None:
                old.shutdown(wait=False)
        self._infer.set_max_batch_size(new.max_batch_size)
        self._infer.set_batch_wait_timeout_s(new.batch_wait_timeout_s)
        self.settings = new
        logger.info("%s: settings %s", self.model_name, new.model_dump())

    def configure_runner(self, runner: ModelRunner, settings: ModelSettings) -> None:
        """Hand the deployment's own settings (beyond the session's) to the runner."""

    def require_model(self) -> ModelEntry:
        if self.entry is None:
            raise ModelUnavailable(f"{self.model_name} is unavailable: {self.unavailable_reason}")
        return self.entry

    # -- batching ------------------------------------------------------------------------------
    async def infer(self, item: Any) -> Any:
        """Queue one item for the next batch (fails fast when the model is unavailable)."""
        self.require_model()
        self.in_flight += 1
        try:
            return await self._infer(item)
        finally:
            self.in_flight -= 1

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, max_concurrent_batches=MAX_CONCURRENT_BATCHES)
    async def _infer(self, items: list[Any]) -> list[Any]:
        self.batch_sizes[len(items)] += 1
        self.items_served += len(items)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_batch, items)

    def run_batch(self, items: list[Any]) -> list[Any]:
        return self.runner.run_batch(items)

    # -- observability -------------------------------------------------------------------------
    async def check_health(self) -> None:
        """Runs the real session on one blank input; raising marks the replica unhealthy.

        A replica without its model is healthy (it answers 503 with the reason); restarting it
        would not bring the model back.
        """
        if self.entry is None:
            return
        spec = self.entry.input_spec()
        shape = [1 if i == 0 else (64 if isinstance(d, str) else int(d)) for i, d in enumerate(spec["shape"])]
        blank = np.zeros(shape, dtype=np.dtype(spec["dtype"]))
        loop = asyncio.get_running_loop()
        outputs = await asyncio.wait_for(loop.run_in_executor(self._executor, self.runner.run_session, blank), timeout=30)
        if not outputs or not all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f"):
            raise RuntimeError(f"{self.entry.name}: health probe produced no or non-finite outputs")

    def info(self) -> dict[str, Any]:
        if self.entry is None:
            return {"name": self.model_name, "available": False, "reason": self.unavailable_reason}
        card = self.entry.card
        return {
            "available": True,
            "name": self.entry.name,
            "version": self.entry.version,
            "task": card.get("task"),
            "description": card.get("description", ""),
            "architecture": card.get("architecture"),
            "weights": card.get("weights", {}),
            "inputs": card.get("inputs", []),
            "outputs": card.get("outputs", []),
            "preprocessing": card.get("preprocessing", {}),
            "batching": {
                "max_batch_size": self.settings.max_batch_size,
                "batch_wait_timeout_s": self.settings.batch_wait_timeout_s,
            },
            "runtime": {
                "inference_threads": self.settings.inference_threads,
                "intra_op_threads": self.runner.session_config.intra_op_threads,
                "inter_op_threads": self.runner.session_config.inter_op_threads,
                "graph_optimization": self.runner.session_config.graph_optimization,
                "providers": self.runner.session.get_providers(),
            },
            "replica": {
                "pid": os.getpid(),
                "items_served": self.items_served,
                "in_flight": self.in_flight,
                "batch_size_counts": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "uptime_s": round(time.time() - self.started_at, 1),
            },
        }
