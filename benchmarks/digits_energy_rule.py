"""The digits energy rule: which share of held-out digits it lets through, and what that buys.

    python -m benchmarks.digits_energy_rule [--test 10000] [--out docs/digits/energy_rule.md]

``reliable`` is the MC rule (predictive entropy <= the calibrated threshold at T=30) and, since
2026-12-03, the energy rule (energy of the eval-mode logits <= its quantile on the ``val`` digits;
lensgraph/training/calibrate_digits.py). This sweeps that quantile and reports, for the MNIST test
digits through the served preprocessing, the share marked reliable and the accuracy among them, and
for each non-digit set of lensgraph.evaluation.ood the share *not* reliable; the MC rule alone is
the first row. Thresholds come from ``val`` only; the test digits and the non-digits are only
looked at. The weights are the committed ones (weights/digits); the MC masks are seeded.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import yaml

from benchmarks.compare import machine

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "digits"
QUANTILES = (0.95, 0.97, 0.98, 0.99)
SAMPLES = 30


def _non_digit_sets(assets: Path | None) -> dict[str, np.ndarray]:
    from lensgraph.evaluation.ood import DIGIT_LIKE, non_digits
    from lensgraph.imaging.digits import prepare_array

    sets: dict[str, list[np.ndarray]] = {}
    for kind, name, image in non_digits(assets):
        prepared = prepare_array(image)
        if prepared.blank:
            continue  # answered blank, never reliable: not a question for the rules
        key = kind if kind != "letter" else ("letters, digit-like" if name[0] in DIGIT_LIKE else "letters, other")
        sets.setdefault(key, []).append(prepared.image)
    return {k: np.stack(v) for k, v in sorted(sets.items())}


def measure(test_count: int, weights: Path = WEIGHTS) -> dict:
    from lensgraph import settings
    from lensgraph.datasets.mnist import load_split
    from lensgraph.training.calibrate_digits import energies, load_model, mc_probabilities, served_view
    from lensgraph.uncertainty.mc_dropout import summarize

    model = load_model(weights / "digit_cnn.pth")
    calibration = yaml.safe_load((weights / "calibration.yaml").read_text())
    mc_threshold = float(calibration["thresholds"][SAMPLES])

    def scored(images: np.ndarray, seed: int):
        summary = summarize(mc_probabilities(model, images, SAMPLES, np.random.default_rng(seed)))
        return summary.prediction, summary.score(calibration["score"]), energies(model, images)

    val_energy = energies(model, served_view(load_split("val").images))
    test = load_split("test")
    prediction, test_score, test_energy = scored(served_view(test.images[:test_count]), 1)
    right = prediction == test.labels[:test_count]
    others = {k: scored(v, 2)[1:] for k, v in _non_digit_sets(settings.assets_dir()).items()}
    rows = []
    for quantile in (None, *QUANTILES):
        cut = np.inf if quantile is None else float(np.quantile(val_energy, quantile))
        accepted = (test_score <= mc_threshold) & (test_energy <= cut)
        rows.append({
            "rule": "MC only" if quantile is None else f"MC and energy <= val q{quantile:g}",
            "energy_threshold": None if quantile is None else round(cut, 3),
            "test_reliable": round(float(accepted.mean()), 4),
            "accuracy_reliable": round(float(right[accepted].mean()), 4),
            "rejected": {k: round(float(np.mean((s > mc_threshold) | (e > cut))), 3) for k, (s, e) in others.items()},
        })
    return {"test_digits": test_count, "sizes": {k: len(v[0]) for k, v in others.items()}, "rows": rows,
            "mc_threshold": mc_threshold, "calibrated_quantile": (calibration.get("energy") or {}).get("quantile")}


def render(result: dict, command: str) -> str:
    kinds = list(result["sizes"])
    lines = ["# Digits: the energy rule", "",
             f"`{command}`, {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, {machine()}. "
             f"Written by benchmarks/digits_energy_rule.py (its docstring says what is measured). "
             f"MC rule: predictive entropy <= {result['mc_threshold']:.4f} at T={SAMPLES}; served quantile: "
             f"{result['calibrated_quantile']}. Test digits: the first {result['test_digits']} of MNIST test.", "",
             "| rule | energy threshold | test digits reliable | accuracy among them | "
             + " | ".join(f"{k} ({result['sizes'][k]}) not reliable" for k in kinds) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(kinds)]
    for r in result["rows"]:
        lines.append(f"| {r['rule']} | {'' if r['energy_threshold'] is None else r['energy_threshold']} | "
                     f"{r['test_reliable']:.2%} | {r['accuracy_reliable']:.2%} | "
                     + " | ".join(f"{r['rejected'][k]:.1%}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=int, default=10000, help="MNIST test digits to use (default all 10000)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="folder with digit_cnn.pth and calibration.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "digits" / "energy_rule.md")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.digits_energy_rule" + (f" --test {args.test}" if args.test != 10000 else "") \
        + (f" --weights {args.weights}" if args.weights != WEIGHTS else "")
    text = render(measure(args.test, args.weights), command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
