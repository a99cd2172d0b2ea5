"""A model deployment's live settings (``user_config``) that every task shares: batching and the session."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lensgraph.runtime.session import SessionConfig, default_threads

# Upper bound of ``inference_threads``: Serve fixes max_concurrent_batches when the class is defined;
# the live setting is the number of threads that run the formed batches.
MAX_CONCURRENT_BATCHES = 2


class ModelSettings(BaseModel):
    """``user_config`` of a model deployment; changes apply to live replicas without a restart."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description=(
        "the repository version to serve (default: the newest); a change loads it into the live replicas"))
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
