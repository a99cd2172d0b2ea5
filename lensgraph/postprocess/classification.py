"""Classifier and embedding outputs -> probabilities, top-k and summary statistics.

Small, numerically careful numpy helpers that every classification endpoint shares, so that
softmax stability, top-k ordering and the validation of a user's ``k`` are defined once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensgraph.errors import InvalidRequest

__all__ = ["embedding_stats", "load_labels", "softmax", "top_k"]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the max is subtracted first); float inputs keep their dtype."""
    x = np.asarray(logits)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of ``probs [N, C]``, largest first.

    Returns ``(indices [N, k], values [N, k])``; equal values are ordered by class index.
    ``k`` must be an integer in ``1..C`` (``InvalidRequest`` otherwise).
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"expected probs of shape [N, C], got {p.shape}")
    n_classes = p.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_classes:
        raise InvalidRequest(
            f"top_k must be an integer between 1 and {n_classes} (the number of classes), "
            f"got {k!r}."
        )
    k = int(k)
    candidates = np.argpartition(-p, k - 1, axis=1)[:, :k] if k < n_classes else (
        np.broadcast_to(np.arange(n_classes), p.shape).copy()
    )
    cand_values = np.take_along_axis(p, candidates, axis=1)
    order = np.lexsort((candidates, -cand_values), axis=1)
    indices = np.take_along_axis(candidates, order, axis=1)
    return indices, np.take_along_axis(p, indices, axis=1)


def embedding_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and population variance (``ddof=0``) of ``emb [N, D]``, in float64."""
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] == 0:
        raise ValueError(f"expected embeddings of shape [N, D] with D >= 1, got {e.shape}")
    return e.mean(axis=1), e.var(axis=1)


def load_labels(path: str | Path) -> list[str]:
    """One label per line, whitespace-stripped; trailing blank lines are dropped.

    Blank lines in the middle are kept (as ``""``) so that line ``i`` stays class ``i``.
    """
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines
