"""One model from the repository with its ONNX Runtime session: ``run_batch(items) -> results``.

The Ray Serve deployments batch requests and hand each batch to a runner; the in-process floor
and the single-process baseline call the same runners, so all three do the same work per item.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lensgraph.repository.store import ModelEntry
from lensgraph.runtime.session import SessionConfig, create_session


class ModelRunner:
    """Base of the runners: the session, its configuration, one ``run_session`` call."""

    def __init__(self, entry: ModelEntry, session_config: SessionConfig = SessionConfig()) -> None:
        self.entry = entry
        self.session_config: SessionConfig | None = None
        self.session = None
        self.configure(session_config)

    def configure(self, session_config: SessionConfig) -> None:
        """(Re)create the session only when its configuration changed."""
        if session_config != self.session_config:
            self.session = create_session(self.entry.onnx_path, session_config)
            self.session_config = session_config
            self.input_name = self.session.get_inputs()[0].name

    def run_session(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})

    def run_batch(self, items: list[Any]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def serve_batch(self, items: list[Any]) -> list[Any]:
        """What a Serve batch of this runner's deployment calls (one item per ``infer`` call)."""
        return self.run_batch(items)
