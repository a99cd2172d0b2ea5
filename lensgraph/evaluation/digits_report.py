"""``lensgraph evaluate digits``: how good the served digit model and its uncertainty are.

Evaluates the artefact that is served (``$LENSGRAPH_MODEL_REPOSITORY/digits``, the MC-dropout
ONNX graph with the calibrated threshold in its card), through ONNX Runtime, with inputs that
went through the same ``prepare_digit`` preprocessing as uploads. Writes ``report.md``,
``report.json`` and PNG plots into ``docs/digits`` (or ``--out``).

Everything random (dropout masks, the non-digit images) comes from ``--seed``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from lensgraph.uncertainty.calibration import (
    accuracy_at_coverage,
    auroc,
    expected_calibration_error,
    reliability_bins,
    risk_coverage,
    threshold_for_samples,
)
from lensgraph.uncertainty.mc_dropout import McSummary, entropy, make_masks, summarize

LADDER = (1, 10, 30, 100)
# name -> (label in the report, where it comes from)
SCORE_LABELS = {
    "softmax_one_minus_max": "1 - max softmax (deterministic pass)",
    "softmax_entropy": "softmax entropy (deterministic pass)",
    "one_minus_max_prob": "1 - max mean probability (MC)",
    "predictive_entropy": "predictive entropy (MC)",
    "expected_entropy": "expected entropy (MC)",
    "mutual_information": "mutual information (MC)",
    "variation_ratio": "variation ratio (MC)",
    "energy": "energy, -logsumexp of the logits (deterministic pass)",
    "distance": "distance to the nearest training digit (trunk features, cosine)",
    "combined": "the served rule's combined score (<= 1 exactly when reliable)",
}
DETERMINISTIC_SCORES = ("softmax_one_minus_max", "softmax_entropy", "energy", "distance")


def combined_score(score: np.ndarray, energy: np.ndarray, threshold: float, energy_threshold: float,
                   distance: np.ndarray | None = None, distance_threshold: float | None = None) -> np.ndarray:
    """max(score / threshold, exp(energy - energy_threshold), distance / distance_threshold): at most 1
    exactly when every rule accepts, and rising with each score, so it ranks inputs the way the served
    rule draws its line."""
    combined = np.maximum(score / threshold, np.exp(np.minimum(energy - energy_threshold, 50.0)))
    if distance is not None and distance_threshold is not None:
        combined = np.maximum(combined, distance / distance_threshold)
    return combined


class DigitsRunner:
    """Runs the served graph on uint8 [N, 28, 28] images in chunks, with masks from a Generator."""

    def __init__(self, onnx_path: Path, dropout_p: float, threads: int = 2) -> None:
        from lensgraph.runtime.session import SessionConfig, create_session

        self.session = create_session(onnx_path, SessionConfig(intra_op_threads=threads))
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.sizes = (int(shapes["mask1"][-1]), int(shapes["mask2"][-1]))
        self.p = dropout_p

    def probabilities(self, images: np.ndarray, samples: int, rng: np.random.Generator | None,
                      chunk: int = 250) -> np.ndarray:
        """[T, N, 10]; ``rng`` None: the deterministic pass (T=1, all-ones masks)."""
        out = []
        for i in range(0, len(images), chunk):
            batch = np.ascontiguousarray(images[i : i + chunk, :, :, None])
            if rng is None:
                m1, m2 = (np.ones((1, len(batch), s), np.float32) for s in self.sizes)
            else:
                m1, m2 = make_masks(samples, len(batch), self.sizes, self.p, rng)
            out.append(self.session.run(None, {"image": batch, "mask1": m1, "mask2": m2})[0])
        return np.concatenate(out, axis=1)

    def output(self, images: np.ndarray, index: int, chunk: int = 250) -> np.ndarray | None:
        """[N] values of the graph's output ``index`` (1: energy, 2: distance); None for a graph without it."""
        if len(self.session.get_outputs()) <= index:
            return None
        out = []
        for i in range(0, len(images), chunk):
            batch = np.ascontiguousarray(images[i : i + chunk, :, :, None])
            m1, m2 = (np.ones((1, len(batch), s), np.float32) for s in self.sizes)
            out.append(self.session.run(None, {"image": batch, "mask1": m1, "mask2": m2})[index])
        return np.concatenate(out)

    def energies(self, images: np.ndarray) -> np.ndarray | None:
        return self.output(images, 1)

    def distances(self, images: np.ndarray) -> np.ndarray | None:
        return self.output(images, 2)


def _scores(det: np.ndarray, mc: McSummary, energy: np.ndarray | None,
            distance: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {
        "softmax_one_minus_max": 1.0 - det.max(axis=1),
        "softmax_entropy": entropy(det),
        **{name: mc.score(name) for name in
           ("one_minus_max_prob", "predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio")},
        **({} if energy is None else {"energy": energy}),
        **({} if distance is None else {"distance": distance}),
    }


def evaluate(repository: Path, assets: Path, out: Path, samples: int | None = None, seed: int = 0,
             threads: int = 2, format_digits: int = 1000, log=print) -> dict[str, Any]:
    from lensgraph.datasets.mnist import load_split
    from lensgraph.evaluation.digit_formats import evaluate_formats
    from lensgraph.evaluation.ood import DIGIT_LIKE, non_digits
    from lensgraph.imaging.digits import prepare_array
    from lensgraph.repository.store import find_model

    entry = find_model(repository, "digits")
    options = entry.card.get("options") or {}
    thresholds = {int(k): v for k, v in (options.get("thresholds") or {}).items()}
    score_name = options.get("uncertainty_score") or "predictive_entropy"
    t_served = int(samples or options.get("mc_samples") or 30)
    threshold = threshold_for_samples(thresholds, t_served)
    energy_threshold = options.get("energy_threshold")
    distance_threshold = options.get("distance_threshold")
    runner = DigitsRunner(entry.onnx_path, float(options.get("dropout_p", 0.5)), threads)
    log(f"model {entry.directory} (score {score_name}, T={t_served}, threshold {threshold})")

    test = load_split("test")
    served = np.stack([prepare_array(image).image for image in test.images])
    labels = test.labels
    det_raw = runner.probabilities(test.images, 1, None)[0]
    det = runner.probabilities(served, 1, None)[0]
    mc = summarize(runner.probabilities(served, t_served, np.random.default_rng([seed, t_served])))
    det_correct = det.argmax(1) == labels
    correct = mc.prediction == labels
    scores = _scores(det, mc, runner.energies(served), runner.distances(served))
    if "energy" not in scores:
        energy_threshold = None  # a graph without the energy output: the MC rule alone
    if "distance" not in scores:
        distance_threshold = None
    log(f"test accuracy: raw {np.mean(det_raw.argmax(1) == labels):.4%}, served deterministic "
        f"{det_correct.mean():.4%}, served MC {correct.mean():.4%}")

    # For the deterministic scores "correct" is the deterministic prediction's; for MC scores the MC one's.
    def correct_for(name: str) -> np.ndarray:
        return det_correct if name in DETERMINISTIC_SCORES else correct

    per_score = {}
    for name, values in scores.items():
        ok = correct_for(name)
        curve = risk_coverage(values, ok)
        per_score[name] = {
            "label": SCORE_LABELS[name],
            "error_auroc": auroc(values, ~ok),
            "accuracy_at_90_coverage": accuracy_at_coverage(values, ok, 0.9),
            "aurc": curve["aurc"],
        }
    mc_accepted = scores[score_name] <= threshold if threshold is not None else np.zeros(len(labels), bool)
    accepted = mc_accepted & (scores["energy"] <= energy_threshold) if energy_threshold is not None else mc_accepted
    if distance_threshold is not None:
        accepted = accepted & (scores["distance"] <= distance_threshold)
    if threshold is not None and energy_threshold is not None:
        scores["combined"] = combined_score(scores[score_name], scores["energy"], threshold, energy_threshold,
                                            scores.get("distance"), distance_threshold)
        per_score["combined"] = {"label": SCORE_LABELS["combined"], "error_auroc": auroc(scores["combined"], ~correct),
                                 "accuracy_at_90_coverage": accuracy_at_coverage(scores["combined"], correct, 0.9),
                                 "aurc": risk_coverage(scores["combined"], correct)["aurc"]}
    served_rule = {
        "score": score_name,
        "samples": t_served,
        "threshold": threshold,
        "target_accuracy": options.get("target_accuracy"),
        "confidence": (options.get("calibration") or {}).get("confidence"),
        "test_coverage": float(accepted.mean()),
        "test_accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None,
        "test_errors_accepted": int((~correct[accepted]).sum()),
        "test_errors_total": int((~correct).sum()),
        "energy_threshold": energy_threshold,
        "distance_threshold": distance_threshold,
        "test_coverage_mc_only": float(mc_accepted.mean()),
        "test_accuracy_accepted_mc_only": float(correct[mc_accepted].mean()) if mc_accepted.any() else None,
    }
    ladder = []
    for t in LADDER:
        s = mc if t == t_served else summarize(runner.probabilities(served, t, np.random.default_rng([seed, t])))
        ok = s.prediction == labels
        thr = threshold_for_samples(thresholds, t)
        acc_mask = s.score(score_name) <= thr if thr is not None else np.zeros(len(labels), bool)
        ladder.append({
            "samples": t, "accuracy": float(ok.mean()), "threshold": thr,
            "coverage": float(acc_mask.mean()),
            "accuracy_accepted": float(ok[acc_mask].mean()) if acc_mask.any() else None,
            "ece": expected_calibration_error(s.probability, ok),
            "error_auroc": auroc(s.score(score_name), ~ok) if t > 1 or score_name != "mutual_information" else 0.5,
        })
        log(f"  T={t:<3} accuracy {ok.mean():.4%}  coverage {acc_mask.mean():.2%}")

    # Test digits as uploads: formats, polarities, sizes.
    def judge(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        summary = summarize(runner.probabilities(images, t_served, np.random.default_rng([seed, t_served, 2])))
        ok = summary.score(score_name) <= threshold if threshold is not None else np.zeros(len(images), bool)
        if energy_threshold is not None:
            ok &= runner.energies(images) <= energy_threshold
        if distance_threshold is not None:
            ok &= runner.distances(images) <= distance_threshold
        return summary.prediction, ok

    sample = np.random.default_rng([seed, 3]).choice(len(labels), format_digits, replace=False)
    uploads = evaluate_formats(test.images[sample], labels[sample], judge)
    log(f"  uploads: reliable {min(r['reliable'] for r in uploads):.2%} .. {max(r['reliable'] for r in uploads):.2%}")

    # Non-digits, through the same preprocessing.
    items = non_digits(assets, seed=seed)
    prepared = [prepare_array(image) for _, _, image in items]
    kinds = np.array([kind for kind, _, _ in items])
    names = [name for _, name, _ in items]
    blank = np.array([p.blank for p in prepared])
    ood_images = np.stack([p.image for p in prepared])
    ood_det = runner.probabilities(ood_images, 1, None)[0]
    ood_mc = summarize(runner.probabilities(ood_images, t_served, np.random.default_rng([seed, t_served, 1])))
    ood_scores = _scores(ood_det, ood_mc, runner.energies(ood_images), runner.distances(ood_images))
    ood_reliable_mc = (~blank) & (ood_scores[score_name] <= threshold if threshold is not None else False)
    ood_reliable = ood_reliable_mc & (ood_scores["energy"] <= energy_threshold if energy_threshold is not None else True)
    if distance_threshold is not None:
        ood_reliable &= ood_scores["distance"] <= distance_threshold
    if "combined" in scores:
        ood_scores["combined"] = combined_score(ood_scores[score_name], ood_scores["energy"], threshold, energy_threshold,
                                                ood_scores.get("distance"), distance_threshold)
    digit_like = np.array([kind == "letter" and name.split("/")[0] in DIGIT_LIKE for kind, name in zip(kinds, names)])
    groups = {
        "letters": kinds == "letter",
        "letters (not digit-like)": (kinds == "letter") & ~digit_like,
        "letters, TrueType fonts": (kinds == "letter") & np.array(["/ttf:" in name for name in names]),
        "symbols": kinds == "symbol",
        "scribbles": kinds == "scribble",
        "noise": kinds == "noise",
        "photo crops": kinds == "photo",
        "all non-digits": np.ones(len(kinds), bool),
    }
    ood = {}
    for group, member in groups.items():
        live = member & ~blank
        row: dict[str, Any] = {
            "images": int(member.sum()),
            "blank": int((member & blank).sum()),
            "marked_reliable": int((member & ood_reliable).sum()),
            "rejected_fraction": float(1 - ood_reliable[member].mean()),
            "rejected_fraction_mc_only": float(1 - ood_reliable_mc[member].mean()),
            "auroc": {},
        }
        if live.any():
            for name in scores:
                row["auroc"][name] = auroc(np.r_[scores[name], ood_scores[name][live]],
                                           np.r_[np.zeros(len(labels), bool), np.ones(int(live.sum()), bool)])
        ood[group] = row
    per_letter = {}
    for letter in sorted({n.split("/")[0] for n, k in zip(names, kinds) if k == "letter"}):
        member = np.array([k == "letter" and n.split("/")[0] == letter for n, k in zip(names, kinds)])
        predicted = np.bincount(ood_mc.prediction[member], minlength=10)
        per_letter[letter] = {"reliable": int(ood_reliable[member].sum()), "of": int(member.sum()),
                              "most_predicted": int(predicted.argmax())}

    result = {
        "model": {"directory": f"{entry.name}/{entry.version}", "weights_sha256": entry.card.get("weights", {}).get("sha256"),
                  "dropout_p": runner.p},
        "seed": seed,
        "test": {
            "images": int(len(labels)),
            "accuracy_raw_deterministic": float(np.mean(det_raw.argmax(1) == labels)),
            "accuracy_served_deterministic": float(det_correct.mean()),
            "accuracy_served_mc": float(correct.mean()),
            "ece_softmax_deterministic": expected_calibration_error(det.max(1), det_correct),
            "ece_mc_mean": expected_calibration_error(mc.probability, correct),
            "nll_softmax_deterministic": float(-np.mean(np.log(np.maximum(det[np.arange(len(labels)), labels], 1e-12)))),
            "nll_mc_mean": float(-np.mean(np.log(np.maximum(mc.mean[np.arange(len(labels)), labels], 1e-12)))),
        },
        "scores": per_score,
        "served_rule": served_rule,
        "reliability_among_reliable": {
            "ece_mc_all": expected_calibration_error(mc.probability, correct),
            "ece_mc_reliable_mc_only": expected_calibration_error(mc.probability[mc_accepted], correct[mc_accepted])
            if mc_accepted.any() else None,
            "ece_mc_reliable": expected_calibration_error(mc.probability[accepted], correct[accepted])
            if accepted.any() else None,
        },
        "uploads": uploads,
        "ladder": ladder,
        "non_digits": ood,
        "letters": per_letter,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    _plots(out, det, det_correct, mc, correct, scores, ood_scores, kinds, blank, score_name, threshold,
           {"MC only": mc_accepted, "served rule": accepted})
    (out / "report.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out / "report.md").write_text(to_markdown(result))
    return result


def _plots(out: Path, det, det_correct, mc, correct, scores, ood_scores, kinds, blank, score_name, threshold,
           rules: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Reliability diagram.
    fig, ax = plt.subplots(figsize=(5.5, 5))
    curves = [("softmax (deterministic)", det.max(1), det_correct, "o"), ("MC-dropout mean", mc.probability, correct, "s")]
    curves += [(f"MC mean, reliable ({rule})", mc.probability[member], correct[member], marker)
               for (rule, member), marker in zip(rules.items(), "^v") if member.any()]
    for label, conf, ok, marker in curves:
        bins = reliability_bins(conf, ok, 15)
        filled = bins["count"] > 0
        ax.plot(bins["confidence"][filled], bins["accuracy"][filled], marker=marker, label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set(xlabel="confidence (mean of bin)", ylabel="accuracy", title="Reliability on MNIST test (15 bins)",
           xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    # Risk-coverage.
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name in ("softmax_one_minus_max", "predictive_entropy", "mutual_information", "variation_ratio"):
        ok = det_correct if name.startswith("softmax") else correct
        curve = risk_coverage(scores[name], ok)
        ax.plot(curve["coverage"], 100 * curve["risk"], label=SCORE_LABELS[name])
    if threshold is not None:
        accepted = scores[score_name] <= threshold
        ax.plot([accepted.mean()], [100 * (1 - correct[accepted].mean())], "k*", ms=12,
                label=f"served threshold ({score_name})")
    ax.axvline(0.9, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="coverage (share of predictions accepted)", ylabel="error rate among accepted (%)",
           title="Risk-coverage, MNIST test", xlim=(0.5, 1.0), ylim=(0, None))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "risk_coverage.png", dpi=110)
    plt.close(fig)

    # Score distributions: digits (right / wrong) against the non-digit families.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = scores[score_name]
    top = max(float(values.max()), float(ood_scores[score_name][~blank].max()) if (~blank).any() else 0) or 1.0
    edges = np.linspace(0, top, 50)
    series = [("MNIST test, right", values[correct]), ("MNIST test, wrong", values[~correct])]
    for kind, label in (("letter", "letters"), ("symbol", "symbols"), ("scribble", "scribbles"), ("noise", "noise"),
                        ("photo", "photo crops")):
        series.append((label, ood_scores[score_name][(kinds == kind) & ~blank]))
    for label, v in series:
        if len(v):
            ax.hist(v, bins=edges, histtype="step", density=True, lw=1.5, label=f"{label} ({len(v)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="served threshold")
    ax.set_yscale("log")
    ax.set(xlabel=score_name.replace("_", " ") + " (nats)", ylabel="density (log)",
           title="Uncertainty of digits and non-digits (after prepare_digit)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def to_markdown(r: dict[str, Any]) -> str:
    t, rule = r["test"], r["served_rule"]
    lines = [
        "# Digits: accuracy and uncertainty report",
        "",
        "Reproduce: `lensgraph models build --only digits && lensgraph evaluate digits` (with `$LENSGRAPH_ASSETS` "
        "set); writes this file, `report.json` and the PNG plots here. Evaluates the served ONNX graph through "
        "ONNX Runtime; every image goes through `prepare_digit`, the preprocessing uploads get, unless marked *raw*.",
        "",
        f"Model: `$LENSGRAPH_MODEL_REPOSITORY/{r['model']['directory']}`, weights sha256 `{str(r['model']['weights_sha256'])[:16]}...`, "
        f"dropout p = {r['model']['dropout_p']}; masks and non-digit images from seed {r['seed']}.",
        "",
        "## Accuracy and calibration (MNIST test, 10,000 images)",
        "",
        "| | accuracy | ECE (15 bins) | NLL |",
        "|---|---:|---:|---:|",
        f"| raw MNIST, deterministic pass (the training metric) | {_pct(t['accuracy_raw_deterministic'])} | | |",
        f"| softmax only (deterministic pass) | {_pct(t['accuracy_served_deterministic'])} | "
        f"{_pct(t['ece_softmax_deterministic'], 3)} | {t['nll_softmax_deterministic']:.4f} |",
        f"| MC-dropout mean, T = {rule['samples']} | {_pct(t['accuracy_served_mc'])} | {_pct(t['ece_mc_mean'], 3)} | "
        f"{t['nll_mc_mean']:.4f} |",
        "",
        "ECE: expected calibration error, |accuracy - confidence| averaged over 15 equal-width confidence bins "
        "weighted by their counts (lower is better); NLL: mean negative log-likelihood of the true digit. "
        "Plot: [reliability.png](reliability.png).",
        "",
        "## Does the model know its own errors?",
        "",
        "| score | AUROC for its errors | accuracy at 90% coverage | AURC |",
        "|---|---:|---:|---:|",
    ]
    for name, s in r["scores"].items():
        lines.append(f"| {s['label']} | {s['error_auroc']:.4f} | {_pct(s['accuracy_at_90_coverage'], 3)} | "
                     f"{100 * s['aurc']:.4f}% |")
    lines += [
        "",
        "AUROC: probability that a wrong prediction scores as more uncertain than a right one (0.5 = chance). "
        "Accuracy at 90% coverage: among the 90% most trusted predictions. AURC: area under the risk-coverage "
        "curve (mean error rate over all coverages; lower is better). "
        "Plot: [risk_coverage.png](risk_coverage.png).",
        "",
        "## The served reliability rule on the test set",
        "",
        f"`reliable` when **{rule['score']} <= {rule['threshold']:.5g}** at T = {rule['samples']} (calibrated on the "
        f"held-out split for {_pct(rule['target_accuracy'], 1)} accuracy among accepted predictions"
        + (f", as the one-sided {rule['confidence']:.0%} Wilson lower bound" if rule.get("confidence") else "")
        + ")"
        + (f" **and energy <= {rule['energy_threshold']:.4g}** (a percentile of the held-out digits' energies)"
           if rule.get("energy_threshold") is not None else "")
        + (f" **and distance <= {rule['distance_threshold']:.4g}** (a percentile of the held-out digits' distances to "
           "the nearest of 3,000 training digits)" if rule.get("distance_threshold") is not None else "")
        + ". On the test set, "
        f"which played no part in choosing it: **{_pct(rule['test_coverage'])}** of the digits are marked reliable, "
        f"with **{_pct(rule['test_accuracy_accepted'], 3)}** accuracy among them ({rule['test_errors_accepted']} of "
        f"the {rule['test_errors_total']} errors slip through)"
        + (f"; with the MC rule alone (before the feature-space rules) {_pct(rule['test_coverage_mc_only'])} at "
           f"{_pct(rule['test_accuracy_accepted_mc_only'], 3)}" if rule.get("energy_threshold") is not None else "")
        + ". The table below is the MC rule alone, per T.",
        "",
        "Calibration among the answers marked reliable (MC mean, 15 bins; the curves are in "
        "[reliability.png](reliability.png)): ECE " + _pct(r["reliability_among_reliable"]["ece_mc_all"], 3)
        + " over all test digits, " + _pct(r["reliability_among_reliable"]["ece_mc_reliable_mc_only"], 3)
        + " among those reliable under the MC rule alone, " + _pct(r["reliability_among_reliable"]["ece_mc_reliable"], 3)
        + " among those reliable under the served rule.",
        "",
        "| T | accuracy (MC mean) | ECE | threshold | coverage | accuracy among reliable | AUROC of the score for errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["ladder"]:
        thr = "none" if row["threshold"] is None else f"{row['threshold']:.5g}"
        lines.append(f"| {row['samples']} | {_pct(row['accuracy'])} | {_pct(row['ece'], 3)} | {thr} | "
                     f"{_pct(row['coverage'])} | {_pct(row['accuracy_accepted'], 3)} | {row['error_auroc']:.4f} |")
    uploads = r.get("uploads") or []
    if uploads:
        lines += [
            "",
            "## Test digits as users send them",
            "",
            f"The same {uploads[0]['images']} test digits (a seeded sample) encoded with Pillow in each format (JPEG and "
            "WebP at quality 90), light ink on dark or dark on light, resized (bilinear) to each size, then decoded "
            "and prepared as uploads are (`lensgraph.evaluation.digit_formats`). Target: >= 95% reliable with "
            ">= 99.7% accuracy among them.",
            "",
            "| format | polarity | size (px) | blank | accuracy | reliable | accuracy among reliable |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for u in uploads:
            lines.append(f"| {u['format']} | {u['polarity']} | {u['size']} | {u['blank']} | {_pct(u['accuracy'])} | "
                         f"{_pct(u['reliable'])} | {_pct(u['accuracy_reliable'], 2)} |")
    lines += [
        "",
        "## Digits against non-digits",
        "",
        "Non-digits made by `lensgraph.evaluation.ood`, none of them used in training or calibration: the 52 "
        "letters in the 8 OpenCV Hershey fonts (random stroke width and italics) and in the installed TrueType "
        "faces of `ood.TRUETYPE_FONTS` (Liberation, FreeFont, DejaVu; `make` installs the first two), 14 symbols "
        "in the Hershey fonts, 200 random stroke scribbles, 200 noise images (uniform, Gaussian, salt, smooth "
        "blobs), 200 random crops of the natural photos in the assets; all through `prepare_digit`. *Digit-like* "
        "letters are exactly O o D Q I l i Z z S s G b B g q (`ood.DIGIT_LIKE`). Images it reports as blank get no "
        "score (the service answers `digit: null`); AUROC is over the rest, against the 10,000 test digits. "
        "*rejected*: blank or not reliable under the served rule; *MC only*: under the MC rule alone, as served "
        "before the energy and distance rules; *combined*: the served rule's combined score (see the first table).",
        "",
        "| non-digits | images | blank | marked reliable | rejected | rejected, MC only | AUROC MI | AUROC pred. entropy "
        "| AUROC 1 - max softmax | AUROC energy | AUROC distance | AUROC combined |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group, row in r["non_digits"].items():
        a = row["auroc"]
        lines.append(
            f"| {group} | {row['images']} | {row['blank']} | {row['marked_reliable']} | {_pct(row['rejected_fraction'], 1)} | "
            f"{_pct(row.get('rejected_fraction_mc_only'), 1)} | "
            f"{a.get('mutual_information', float('nan')):.4f} | {a.get('predictive_entropy', float('nan')):.4f} | "
            f"{a.get('softmax_one_minus_max', float('nan')):.4f} | {a.get('energy', float('nan')):.4f} | "
            f"{a.get('distance', float('nan')):.4f} | {a.get('combined', float('nan')):.4f} |"
        )
    letters = r["letters"]
    leaked = sorted(((v["reliable"], k) for k, v in letters.items() if v["reliable"]), reverse=True)
    lines += [
        "",
        "Letters marked reliable (count of fonts, and the digit they were read as): "
        + (", ".join(f"{k} {n}x as {letters[k]['most_predicted']}" for n, k in leaked) or "none") + ".",
        "",
        "Plot of the served score for right and wrong digits and each non-digit family: [scores.png](scores.png).",
        "",
        f"_Generated {r['created']}._",
        "",
    ]
    return "\n".join(lines)
