"""MC-dropout maths and calibration against hand-computed values; masks are reproducible."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lensgraph.uncertainty.calibration import (
    accuracy_at_coverage,
    auroc,
    choose_threshold,
    expected_calibration_error,
    reliability_bins,
    risk_coverage,
    threshold_for_samples,
    wilson_lower_bound,
)
from lensgraph.uncertainty.mc_dropout import (
    entropy,
    expected_entropy,
    make_masks,
    mean_distribution,
    mutual_information,
    predictive_entropy,
    summarize,
    variation_ratio,
)

LN2 = math.log(2)


def _h(p):
    return -sum(x * math.log(x) for x in p if x > 0)


# --------------------------------------------------------------------------- MC summaries


def test_disagreeing_confident_samples_are_pure_epistemic_uncertainty():
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # T=2, N=1, C=2
    assert predictive_entropy(probs) == pytest.approx([LN2])
    assert expected_entropy(probs) == pytest.approx([0.0])
    assert mutual_information(probs) == pytest.approx([LN2])
    assert variation_ratio(probs) == pytest.approx([0.5])


def test_agreeing_unsure_samples_are_pure_aleatoric_uncertainty():
    probs = np.full((5, 1, 2), 0.5)
    assert predictive_entropy(probs) == pytest.approx([LN2])
    assert expected_entropy(probs) == pytest.approx([LN2])
    assert mutual_information(probs) == pytest.approx([0.0], abs=1e-12)
    assert variation_ratio(probs) == pytest.approx([0.0])


def test_summaries_of_a_three_class_example_by_hand():
    samples = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.7, 0.1, 0.2]]
    probs = np.array(samples)[:, None, :]  # T=4, N=1, C=3
    mean = [0.525, 0.35, 0.125]
    assert mean_distribution(probs)[0] == pytest.approx(mean)
    pred = _h(mean)
    exp = sum(_h(s) for s in samples) / 4
    assert predictive_entropy(probs)[0] == pytest.approx(pred)
    assert expected_entropy(probs)[0] == pytest.approx(exp)
    assert mutual_information(probs)[0] == pytest.approx(pred - exp)
    assert variation_ratio(probs)[0] == pytest.approx(1 - 3 / 4)  # argmaxes 0, 0, 1, 0
    s = summarize(probs)
    assert (s.prediction[0], s.probability[0], s.samples) == (0, pytest.approx(0.525), 4)
    assert s.row(0) == pytest.approx({"predictive_entropy": pred, "expected_entropy": exp,
                                      "mutual_information": pred - exp, "variation_ratio": 0.25})
    assert s.score("one_minus_max_prob")[0] == pytest.approx(0.475)
    with pytest.raises(ValueError, match="unknown uncertainty score"):
        s.score("vibes")


def test_entropy_treats_zero_probabilities_as_zero_terms_and_inputs_are_checked():
    assert entropy(np.array([1.0, 0.0, 0.0])) == 0.0
    assert entropy(np.array([0.25] * 4)) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        predictive_entropy(np.ones((3, 2)))


def test_summaries_are_vectorised_over_many_inputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5, 10))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    s = summarize(probs)
    for i in range(5):
        one = summarize(probs[:, i : i + 1])
        assert one.row(0) == pytest.approx(s.row(i))
    assert np.all(s.mutual_information >= 0) and np.all(s.mutual_information <= s.predictive_entropy + 1e-12)


# --------------------------------------------------------------------------- masks


def test_masks_are_inverted_dropout_and_reproducible_with_a_seed():
    a1, a2 = make_masks(30, 4, (1024, 128), 0.5, 123)
    b1, b2 = make_masks(30, 4, (1024, 128), 0.5, np.random.default_rng(123))
    c1, _ = make_masks(30, 4, (1024, 128), 0.5, 124)
    assert a1.shape == (30, 4, 1024) and a2.shape == (30, 4, 128) and a1.dtype == np.float32
    assert set(np.unique(a1)) == {0.0, 2.0}
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, c1)
    assert abs(float((a1 == 0).mean()) - 0.5) < 0.01  # 122,880 draws
    assert float(a1.mean()) == pytest.approx(1.0, abs=0.02)  # expectation preserved


def test_masks_for_other_rates_and_the_deterministic_case():
    m, = make_masks(50, 10, (1000,), 0.2, 0)
    assert set(np.unique(m)) == {0.0, np.float32(1.25)}
    assert abs(float((m == 0).mean()) - 0.2) < 0.01
    ones, = make_masks(1, 3, (8,), 0.0, 0)
    np.testing.assert_array_equal(ones, np.ones((1, 3, 8), np.float32))
    unseeded = [make_masks(5, 2, (64,), 0.5, None)[0] for _ in range(2)]
    assert not np.array_equal(*unseeded)
    with pytest.raises(ValueError):
        make_masks(1, 1, (4,), 1.0, 0)
    with pytest.raises(ValueError):
        make_masks(0, 1, (4,), 0.5, 0)


# --------------------------------------------------------------------------- calibration metrics


def test_expected_calibration_error_by_hand():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 0, 1, 1])
    # bin (0.8, 0.9]: accuracy 0.5 vs 0.9; bin (0.5, 0.6]: accuracy 1.0 vs 0.6; each half the data
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    bins = reliability_bins(conf, correct, 10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0
    assert expected_calibration_error(np.array([0.8] * 10), np.array([1] * 8 + [0] * 2)) == pytest.approx(0.0)


def test_risk_coverage_and_accuracy_at_coverage_by_hand():
    score = np.array([0.1, 0.2, 0.2, 0.5])
    correct = np.array([1, 0, 1, 0])
    curve = risk_coverage(score, correct)
    assert curve["threshold"].tolist() == [0.1, 0.2, 0.5]  # ties accepted together
    assert curve["coverage"].tolist() == [0.25, 0.75, 1.0]
    assert curve["risk"] == pytest.approx([0.0, 1 / 3, 0.5])
    assert curve["aurc"] == pytest.approx(0.25 * 0 + 0.5 * (1 / 3) + 0.25 * 0.5)
    assert accuracy_at_coverage(score, correct, 0.25) == 1.0
    assert accuracy_at_coverage(score, correct, 1.0) == 0.5


def test_auroc_by_hand_with_ties_and_against_all_pairs():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([1.0, 1.0], [1, 0]) == pytest.approx(0.5)
    assert auroc([0.0, 1.0], [0, 1]) == 1.0 and auroc([0.0, 1.0], [1, 0]) == 0.0
    rng = np.random.default_rng(1)
    score = rng.integers(0, 5, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a, b in
             itertools.product(score[positive], score[~positive])]
    assert auroc(score, positive) == pytest.approx(np.mean(pairs))
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([0.1, 0.2], [1, 1])


def test_wilson_lower_bound_known_value():
    # 95 of 100 at 95% one-sided confidence = the lower end of the two-sided 90% Wilson interval [0.9008, 0.9770]
    assert float(wilson_lower_bound(95, 100, 0.95)) == pytest.approx(0.9008, abs=2e-4)
    assert float(wilson_lower_bound(1000, 1000, 0.95)) < 1.0


def _synthetic(n: int, seed: int):
    """Scores in [0, 1] whose error probability grows with the score: P(error | s) = 0.1 * s^2."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    correct = rng.random(n) >= 0.1 * score**2
    return score, correct


def test_choose_threshold_meets_the_target_with_the_most_coverage():
    score, correct = _synthetic(20000, 0)
    choice = choose_threshold(score, correct, 0.99)
    accepted = score <= choice.threshold
    assert choice.met and choice.accepted == int(accepted.sum())
    assert correct[accepted].mean() >= 0.99
    assert choice.accuracy == pytest.approx(correct[accepted].mean())
    # No larger threshold also meets the target: the next distinct score already falls short.
    for t in np.sort(score[score > choice.threshold])[:50]:
        assert correct[score <= t].mean() < 0.99
    # Exact expectation: accuracy among s <= t is 1 - 0.1 t^2 / 3, so 99% at t = sqrt(0.3) = 0.548.
    assert choice.threshold == pytest.approx(math.sqrt(0.3), abs=0.08)
    # It generalises: fresh data from the same distribution is close to the target.
    fresh_score, fresh_correct = _synthetic(20000, 1)
    assert fresh_correct[fresh_score <= choice.threshold].mean() == pytest.approx(0.99, abs=0.003)


def test_choose_threshold_with_a_confidence_bound_is_more_careful():
    score, correct = _synthetic(5000, 2)
    plain = choose_threshold(score, correct, 0.99)
    careful = choose_threshold(score, correct, 0.99, confidence=0.95)
    assert careful.met and careful.threshold < plain.threshold and careful.coverage < plain.coverage
    assert careful.accuracy_lower_bound >= 0.99 and careful.accuracy > careful.accuracy_lower_bound


def test_choose_threshold_when_the_target_cannot_be_met_accepts_nothing():
    score = np.array([0.1, 0.2, 0.3])
    choice = choose_threshold(score, np.array([0, 1, 1]), 0.99)
    assert not choice.met and choice.accepted == 0 and choice.threshold < 0.1
    assert choose_threshold(score, np.array([1, 1, 1]), 0.99).threshold == pytest.approx(0.3)


def test_threshold_for_samples_uses_the_largest_calibrated_t_below():
    table = {1: 0.1, 10: 0.2, "30": 0.3, 100: None}
    assert threshold_for_samples(table, 30) == 0.3
    assert threshold_for_samples(table, 200) == 0.3  # 100 is uncalibrated (target unreachable)
    assert threshold_for_samples(table, 9) == 0.1
    assert threshold_for_samples({10: 0.2}, 5) is None
    assert threshold_for_samples({}, 30) is None
