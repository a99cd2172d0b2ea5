"""What every model deployment shares: an ONNX Runtime session from the model repository, dynamic
batching through ``@serve.batch``, live batching settings from ``user_config``, a real health check.

The model's card says its task; deployments/tasks.py gives the task's runner (lensgraph.inference:
the Ray-free object that owns the session and implements ``run_batch(items) -> results``) and its
settings class. The deployment adds batching, live settings and health.

Two batch queues, both sized by the live ``max_batch_size``: ``_infer`` for the task's items (/v1 routes,
one item per request) and ``_infer_rows`` for raw tensor rows (the Open Inference Protocol, /v2: a request
of N rows is N items, and one session call runs the queued rows of many requests; lensgraph.protocol.v2).
Both keep the replica's inference counters (lensgraph.protocol.stats), once per batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from deployments.settings import MAX_CONCURRENT_BATCHES, ModelSettings
from deployments.tasks import TaskServing, serving_for
from lensgraph import settings as lg_settings
from lensgraph.errors import ModelUnavailable
from lensgraph.inference.model_runner import ModelRunner
from lensgraph.protocol import v2 as protocol_v2
from lensgraph.protocol.stats import InferenceStats
from lensgraph.repository.store import ModelEntry, find_model

logger = logging.getLogger("ray.serve")


def weights_hint(model_name: str) -> str:
    """configs/models.yaml's ``weights_hint`` for a model that was not built: how to provide its weights."""
    from lensgraph.repository.spec import load_models_config

    try:
        spec = load_models_config(Path(__file__).resolve().parents[1] / "configs" / "models.yaml").get(model_name)
    except Exception:  # noqa: BLE001 - a hint is optional; the reason stands without it
        return ""
    return spec.weights_hint if spec is not None else ""


class BatchedModel:
    """Base of the model deployments (not a deployment itself)."""

    def __init__(self, model_name: str, repository: str | None = None, version: int | None = None) -> None:
        self.model_name = model_name
        self.entry: ModelEntry | None = None
        self.serving: TaskServing | None = None
        self.unavailable_reason = ""
        self.root = lg_settings.model_repository_dir(repository)
        try:
            self.entry = find_model(self.root, model_name, version)
            self.serving = serving_for(self.entry.card.get("task"))
        except (ModelUnavailable, ValueError) as exc:
            # Stay up without the model: its routes answer 503 with this reason, the others keep serving.
            self.entry = None
            self.unavailable_reason = exc.message if isinstance(exc, ModelUnavailable) else str(exc)
            hint = weights_hint(model_name)
            if hint:
                self.unavailable_reason += f"; its weights: {hint}"
            logger.warning("%s unavailable: %s", model_name, self.unavailable_reason)
        self.settings_class = self.serving.settings if self.serving else ModelSettings
        self.settings = self.settings_class(**self._card_batching())
        self.runner: ModelRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.items_served = 0
        self.in_flight = 0  # items queued or in a batch on this replica (reported by info())
        self.stats = InferenceStats()  # Triton's statistics (GET /v2/models/{name}/stats), per batch
        self._signature: tuple[ModelEntry, protocol_v2.Signature] | None = None
        self.started_at = time.time()
        self._apply(self.settings)

    # -- configuration -------------------------------------------------------------------------
    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Serve calls this with ``user_config`` at start and on every config change.

        Without its model the replica keeps only the shared settings: the task's own cannot be checked."""
        values = {**self._card_batching(), **(user_config or {})}
        if self.serving is None:
            values = {k: v for k, v in values.items() if k in ModelSettings.model_fields}
        self._apply(self.settings_class.model_validate(values))

    def _card_batching(self) -> dict[str, Any]:
        """The card's batching hints (``serving`` in configs/models.yaml), under whatever user_config says."""
        hints = (self.entry.card.get("serving") or {}) if self.entry is not None else {}
        return {k: hints[k] for k in ("max_batch_size", "batch_wait_timeout_s") if k in hints}

    def _apply(self, new: ModelSettings) -> None:
        pinned_before = self.settings.version is not None
        if self.entry is not None and (new.version not in (None, self.entry.version)
                                       or (new.version is None and pinned_before)):
            self._swap_version(new)  # a new pin, or back to the newest when the pin is removed
        if self.entry is not None:
            if self.runner is None:
                self.runner = self.serving.runner(self.entry, new.session_config())
            else:
                self.runner.configure(new.session_config())
            self.serving.configure(self.runner, new)
        if self._executor is None or new.inference_threads != self.settings.inference_threads:
            # Batches run on these threads (ONNX Runtime releases the GIL) while the event loop keeps
            # queueing; several threads with one intra-op thread each avoid ORT's own thread-pool
            # synchronisation, which costs CPU on a small, busy node (docs/serving.md).
            old, self._executor = self._executor, ThreadPoolExecutor(new.inference_threads, f"{self.model_name}-ort")
            if old is not None:
                old.shutdown(wait=False)
        for queue in (self._infer, self._infer_rows):
            queue.set_max_batch_size(new.max_batch_size)
            queue.set_batch_wait_timeout_s(new.batch_wait_timeout_s)
        self.settings = new
        logger.info("%s: settings %s", self.model_name, new.model_dump())

    def _swap_version(self, new: ModelSettings) -> None:
        """Serve another version of the model: loaded beside the current one, then swapped in, so batches
        already running finish on the old session and none fails (docs/models.md, "Versions")."""
        entry = find_model(self.root, self.model_name, new.version)  # ModelUnavailable names the versions there are
        if entry.card.get("task") != self.entry.card.get("task"):
            raise ValueError(f"{self.model_name} version {entry.version} serves task {entry.card.get('task')!r}, "
                             f"not {self.entry.card.get('task')!r}: serve it under its own name")
        runner = self.serving.runner(entry, new.session_config())
        logger.info("%s: version %s -> %s", self.model_name, self.entry.version, entry.version)
        self.entry, self.runner = entry, runner

    def require_model(self) -> ModelEntry:
        if self.entry is None:
            raise ModelUnavailable(f"{self.model_name} is unavailable: {self.unavailable_reason}")
        return self.entry

    # -- batching ------------------------------------------------------------------------------
    async def infer(self, item: Any) -> tuple[int, Any]:
        """Queue one item for the next batch (fails fast when the model is unavailable).

        Returns (the version that answered, the result): the ingress labels answers with it."""
        self.require_model()
        self.in_flight += 1
        try:
            return await self._infer((item, time.perf_counter_ns()))
        finally:
            self.in_flight -= 1

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, max_concurrent_batches=MAX_CONCURRENT_BATCHES)
    async def _infer(self, queued: list[tuple[Any, int]]) -> list[Any]:
        """Items of the task's method, each with its arrival time (one item: one request)."""
        started = time.perf_counter_ns()
        size = len(queued)
        self.batch_sizes[size] += 1
        self.items_served += size
        arrivals = sum(arrived for _, arrived in queued)
        loop = asyncio.get_running_loop()
        runner = self.runner  # a version swap during the batch leaves this one to finish on its session
        try:
            results = await loop.run_in_executor(self._executor, runner.serve_batch, [item for item, _ in queued])
        except BaseException:
            self.stats.failed(size, arrivals, time.perf_counter_ns())
            raise
        self.stats.batch(size, size, arrivals, started, time.perf_counter_ns())
        return [(runner.entry.version, result) for result in results]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, max_concurrent_batches=MAX_CONCURRENT_BATCHES)
    async def _infer_rows(self, queued: list[tuple[dict[str, np.ndarray], int, bool]]) -> list[Any]:
        """Raw tensor rows (/v2): (one row of every input, its request's arrival, whether it is the request's
        last row). The rows of all queued requests go through the session in one call."""
        started = time.perf_counter_ns()
        size = len(queued)
        self.batch_sizes[size] += 1
        self.items_served += size
        ends = [arrived for _, arrived, last in queued if last]
        loop = asyncio.get_running_loop()
        runner = self.runner
        signature = self.protocol_signature(runner)
        try:
            results, (spent_input, spent_infer, spent_output) = await loop.run_in_executor(
                self._executor, protocol_v2.run_rows, runner.session, signature, [row for row, _, _ in queued])
        except BaseException:
            self.stats.failed(len(ends), sum(ends), time.perf_counter_ns())
            raise
        self.stats.batch(size, len(ends), sum(ends), started, time.perf_counter_ns(),
                         spent_input, spent_infer, spent_output)
        return [(runner.entry.version, result) for result in results]

    def protocol_signature(self, runner: ModelRunner | None = None) -> protocol_v2.Signature:
        """The served version's Open Inference Protocol signature (its card's tensors), checked once against
        its graph: a card that disagrees with its graph is refused with the reason, never a session error."""
        runner = runner or self.runner
        if runner is None:
            self.require_model()
        cached = self._signature
        if cached is None or cached[0] is not runner.entry:
            signature = protocol_v2.Signature.from_card(runner.entry.card)
            graph_inputs = {i.name for i in runner.session.get_inputs()}
            graph_outputs = {o.name for o in runner.session.get_outputs()}
            fed = {t.name for t in signature.inputs} | {f.name for f in signature.filled}
            if fed != graph_inputs or not set(signature.output_names()) <= graph_outputs:
                raise protocol_v2.ProtocolError(
                    f"model {runner.entry.name!r} version {runner.entry.version}: its card's tensors "
                    f"({sorted(fed)} -> {signature.output_names()}) are not its graph's ({sorted(graph_inputs)} -> "
                    f"{sorted(graph_outputs)}); rebuild it")
            self._signature = cached = (runner.entry, signature)
        return cached[1]

    def run_batch(self, items: list[Any]) -> list[Any]:
        """One batch on the current runner, without Serve (tests and tools)."""
        return self.runner.serve_batch(items)

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

    def protocol_state(self) -> dict[str, Any]:
        """What the Open Inference Protocol's config and stats endpoints need, live: the served version,
        the batching settings and this replica's counters (lensgraph.protocol.stats)."""
        if self.entry is None:
            return {"available": False, "reason": self.unavailable_reason}
        return {"available": True, "version": self.entry.version, "max_batch_size": self.settings.max_batch_size,
                "batch_wait_timeout_s": self.settings.batch_wait_timeout_s, "stats": self.stats.snapshot()}

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
            "options": card.get("options", {}),  # postprocessing defaults the routes read (thresholds, tiling)
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
