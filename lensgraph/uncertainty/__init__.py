"""Monte-Carlo dropout uncertainty and its calibration: plain numpy, no torch, usable at serve time."""

from lensgraph.uncertainty.calibration import (
    auroc,
    choose_threshold,
    expected_calibration_error,
    risk_coverage,
)
from lensgraph.uncertainty.mc_dropout import (
    SCORES,
    McSummary,
    entropy,
    expected_entropy,
    make_masks,
    mutual_information,
    predictive_entropy,
    summarize,
    variation_ratio,
)

__all__ = [
    "SCORES",
    "McSummary",
    "auroc",
    "choose_threshold",
    "entropy",
    "expected_calibration_error",
    "expected_entropy",
    "make_masks",
    "mutual_information",
    "predictive_entropy",
    "risk_coverage",
    "summarize",
    "variation_ratio",
]
