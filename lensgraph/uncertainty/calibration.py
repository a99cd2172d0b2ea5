"""Turning an uncertainty score into a decision, and measuring how good score and decision are.

Convention: a *score* is higher for less trustworthy predictions (an entropy, the mutual
information, 1 - max probability). A prediction is *accepted* (``reliable``) when its score is
at or below a threshold.

* :func:`choose_threshold` picks the threshold on a held-out split so that the accuracy among
  the accepted predictions reaches a target (optionally with a one-sided Wilson lower bound, so
  the target holds with a stated confidence rather than only on the split it was chosen on),
  accepting as many predictions as possible.
* :func:`risk_coverage` is the selective-prediction curve: sort by score, accept the k most
  trusted, risk = error rate among them, coverage = k / N.
* :func:`expected_calibration_error`: the gap between stated confidence and observed accuracy,
  averaged over equal-width confidence bins weighted by their counts.
* :func:`auroc`: the probability that a random positive (an error, a non-digit) scores higher
  than a random negative, ties counting one half (Mann-Whitney U), without sklearn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "ThresholdChoice",
    "accuracy_at_coverage",
    "auroc",
    "choose_threshold",
    "expected_calibration_error",
    "reliability_bins",
    "risk_coverage",
    "threshold_for_samples",
    "wilson_lower_bound",
]


def _pair(score: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64).ravel()
    c = np.asarray(correct).ravel().astype(bool)
    if s.shape != c.shape:
        raise ValueError(f"score and correct differ in length: {s.shape} vs {c.shape}")
    if s.size == 0:
        raise ValueError("need at least one prediction")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, c


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin on [0, 1]: count, mean confidence, accuracy (NaN when empty)."""
    conf, ok = _pair(confidence, correct)
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    # Bin k holds (k/n, (k+1)/n]; confidence 0 goes into the first bin.
    index = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    ok_sum = np.bincount(index, weights=ok.astype(float), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        accuracy = np.where(counts > 0, ok_sum / counts, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"edges": edges, "count": counts, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum_bins (n_b / N) * |accuracy_b - mean confidence_b| with equal-width bins."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = bins["count"].sum()
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] / n * gaps))


def risk_coverage(score: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """The risk-coverage curve at every distinct threshold (ties are accepted together).

    Returns ascending ``threshold`` (accept score <= threshold), ``coverage`` and ``risk`` (error
    rate among the accepted), one entry per distinct score value, plus ``aurc``, the area under
    the curve (mean risk over coverage; lower is better).
    """
    s, ok = _pair(score, correct)
    order = np.argsort(s, kind="stable")
    s, errors = s[order], (~ok[order]).astype(np.int64)
    cum_errors = np.cumsum(errors)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    accepted = np.arange(1, s.size + 1)[last_of_tie]
    risk = cum_errors[last_of_tie] / accepted
    coverage = accepted / s.size
    # Area with the risk held constant across each coverage step.
    widths = np.diff(np.r_[0.0, coverage])
    return {"threshold": s[last_of_tie], "coverage": coverage, "risk": risk, "aurc": float(np.sum(widths * risk))}


def accuracy_at_coverage(score: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy among the ``ceil(coverage * N)`` most trusted predictions (lowest scores)."""
    s, ok = _pair(score, correct)
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    k = max(1, math.ceil(coverage * s.size - 1e-9))
    order = np.argsort(s, kind="stable")[:k]
    return float(ok[order].mean())


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for telling ``positive`` from the rest (ties = 1/2)."""
    s = np.asarray(score, dtype=np.float64).ravel()
    pos = np.asarray(positive).ravel().astype(bool)
    if s.shape != pos.shape:
        raise ValueError(f"score and positive differ in length: {s.shape} vs {pos.shape}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    # Average ranks over ties, then the Mann-Whitney U of the positives.
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1], True])
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[start:stop]] = 0.5 * (start + stop - 1) + 1.0
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def wilson_lower_bound(successes: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Wilson score lower bound of a binomial proportion at ``confidence`` (e.g. 0.95)."""
    from statistics import NormalDist

    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    z = NormalDist().inv_cdf(confidence)
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(successes, dtype=np.float64) / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float  # accept when score <= threshold
    target_accuracy: float
    confidence: float | None  # None: the empirical accuracy must reach the target
    accepted: int
    total: int
    coverage: float
    accuracy: float  # among the accepted, on the calibration split
    accuracy_lower_bound: float | None
    met: bool  # False when no threshold reaches the target (then nothing is accepted)

    def to_dict(self) -> dict:
        return {k: (round(v, 10) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def choose_threshold(
    score: np.ndarray,
    correct: np.ndarray,
    target_accuracy: float,
    confidence: float | None = None,
) -> ThresholdChoice:
    """The threshold with the most accepted predictions whose accuracy among them meets the target.

    With ``confidence`` (e.g. 0.95) the one-sided Wilson lower bound of that accuracy must meet
    the target instead of the observed value, which guards against a lucky calibration split.
    The threshold sits halfway to the next larger score, so tiny numeric differences between
    runtimes do not flip predictions at the boundary. When no threshold meets the target nothing
    is accepted (``met`` is False and the threshold is below every score).
    """
    s, ok = _pair(score, correct)
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
    order = np.argsort(s, kind="stable")
    s_sorted, ok_sorted = s[order], ok[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    accepted = np.arange(1, s.size + 1)[last_of_tie]
    right = np.cumsum(ok_sorted)[last_of_tie]
    values = s_sorted[last_of_tie]
    accuracy = right / accepted
    bound = wilson_lower_bound(right, accepted, confidence) if confidence is not None else None
    meets = (bound if bound is not None else accuracy) >= target_accuracy - 1e-12
    if not meets.any():
        below = float(values[0]) - max(1e-6, abs(float(values[0])) * 1e-6)
        return ThresholdChoice(below, target_accuracy, confidence, 0, s.size, 0.0, float("nan"), None, False)
    k = int(np.flatnonzero(meets)[-1])
    threshold = float(values[k]) if k + 1 == values.size else float((values[k] + values[k + 1]) / 2)
    return ThresholdChoice(
        threshold=threshold,
        target_accuracy=float(target_accuracy),
        confidence=confidence,
        accepted=int(accepted[k]),
        total=int(s.size),
        coverage=float(accepted[k] / s.size),
        accuracy=float(accuracy[k]),
        accuracy_lower_bound=None if bound is None else float(bound[k]),
        met=True,
    )


def threshold_for_samples(thresholds: dict, samples: int) -> float | None:
    """The threshold calibrated for the largest T <= ``samples`` (None when there is none).

    Thresholds depend on T (estimates from few samples are noisier, and mutual information from
    one sample is always 0), so they are calibrated for a ladder of T values and a request with
    another T uses the nearest calibrated T below it.
    """
    table = {int(k): v for k, v in (thresholds or {}).items() if v is not None}
    usable = [t for t in table if t <= samples]
    return float(table[max(usable)]) if usable else None
