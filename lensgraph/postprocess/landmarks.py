"""Keypoint model outputs -> (x, y) points.

Two output styles are covered: direct regression (the 15-point Kaggle facial-keypoints model,
30 numbers normalised to the crop) and heatmaps (one map per keypoint). Heatmap decoding uses
argmax plus a per-axis parabola fit through the peak and its two neighbours, which recovers
sub-pixel positions cheaply; it is vectorised over batch and keypoints.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LANDMARK_NAMES", "decode_heatmaps", "decode_regressor", "named_points"]

# Kaggle "Facial Keypoints Detection" order (x, y per name); "left" is the subject's left,
# which is the image right in a frontal photo.
LANDMARK_NAMES: tuple[str, ...] = (
    "left_eye_center",
    "right_eye_center",
    "left_eye_inner_corner",
    "left_eye_outer_corner",
    "right_eye_inner_corner",
    "right_eye_outer_corner",
    "left_eyebrow_inner_end",
    "left_eyebrow_outer_end",
    "right_eyebrow_inner_end",
    "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner",
    "mouth_right_corner",
    "mouth_center_top_lip",
    "mouth_center_bottom_lip",
)


def decode_regressor(out: np.ndarray, crop_size: int = 96) -> np.ndarray:
    """``[30]`` -> ``[15, 2]`` or ``[N, 30]`` -> ``[N, 15, 2]`` (x, y) in crop pixels.

    The model was trained on targets ``(pixel - c) / c`` with ``c = crop_size / 2``
    (48 for 96x96 crops), so ``pixel = out * c + c``.
    """
    values = np.asarray(out, dtype=np.float64)
    n_values = 2 * len(LANDMARK_NAMES)
    if values.ndim not in (1, 2) or values.shape[-1] != n_values:
        raise ValueError(f"expected [{n_values}] or [N, {n_values}], got {values.shape}")
    half = crop_size / 2.0
    points = values * half + half
    return points.reshape(*values.shape[:-1], len(LANDMARK_NAMES), 2)


def named_points(points: np.ndarray) -> dict[str, tuple[float, float]]:
    """``[15, 2]`` points -> ``{name: (x, y)}`` in :data:`LANDMARK_NAMES` order."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (len(LANDMARK_NAMES), 2):
        raise ValueError(f"expected [{len(LANDMARK_NAMES)}, 2], got {pts.shape}")
    return {name: (float(x), float(y)) for name, (x, y) in zip(LANDMARK_NAMES, pts)}


def decode_heatmaps(
    heatmaps: np.ndarray, apply_sigmoid: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Peak of each heatmap with sub-pixel refinement.

    ``heatmaps`` is ``[K, H, W]`` or ``[N, K, H, W]``. Returns ``points [..., K, 2]`` as float
    (x, y) in heatmap pixel indices (the centre of pixel ``i`` is ``i``) and ``confidence
    [..., K]``: the raw peak value, or ``sigmoid(peak)`` with ``apply_sigmoid=True`` for models
    that emit logits. The offset along each axis is the vertex of the parabola through the peak
    and its two neighbours, clamped to +-0.5; it is 0 at a border or where the neighbourhood is
    not strictly peaked (flat or not concave).
    """
    maps = np.asarray(heatmaps)
    if maps.ndim not in (3, 4) or maps.shape[-1] < 1 or maps.shape[-2] < 1:
        raise ValueError(f"expected [K, H, W] or [N, K, H, W], got {maps.shape}")
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, h, w).astype(np.float64, copy=False)
    idx = np.argmax(flat.reshape(flat.shape[0], -1), axis=1)
    py, px = np.divmod(idx, w)
    rows = np.arange(flat.shape[0])
    peak = flat[rows, py, px]
    left = flat[rows, py, np.maximum(px - 1, 0)]
    right = flat[rows, py, np.minimum(px + 1, w - 1)]
    above = flat[rows, np.maximum(py - 1, 0), px]
    below = flat[rows, np.minimum(py + 1, h - 1), px]
    dx = _parabola_offset(left, peak, right, (px > 0) & (px < w - 1))
    dy = _parabola_offset(above, peak, below, (py > 0) & (py < h - 1))
    points = np.stack([px + dx, py + dy], axis=-1).reshape(*lead, 2)
    confidence = 1.0 / (1.0 + np.exp(-peak)) if apply_sigmoid else peak
    return points, confidence.reshape(lead)


def _parabola_offset(
    before: np.ndarray, peak: np.ndarray, after: np.ndarray, interior: np.ndarray
) -> np.ndarray:
    """Vertex of the parabola through (-1, before), (0, peak), (1, after), clamped to +-0.5."""
    curvature = before - 2.0 * peak + after
    valid = interior & (curvature < 0)
    safe = np.where(valid, curvature, -1.0)
    offset = np.where(valid, (before - after) / (2.0 * safe), 0.0)
    return np.clip(offset, -0.5, 0.5)


def landmark_records(points: np.ndarray, confidence: np.ndarray | None = None) -> list[dict[str, float | str | None]]:
    """[{name, x, y, confidence}] in output order: the API's landmark shape.

    ``confidence`` is None where it is NaN or absent (regressors have none), as the API's schema says.
    """
    records: list[dict[str, float | str | None]] = []
    for i, (name, (x, y)) in enumerate(zip(LANDMARK_NAMES, np.asarray(points, dtype=np.float64))):
        value = None if confidence is None or np.isnan(confidence[i]) else float(confidence[i])
        records.append({"name": name, "x": float(x), "y": float(y), "confidence": value})
    return records
