"""The digits energy and distance rules: which share of held-out digits they let through, and what that buys.

    python -m benchmarks.digits_energy_rule [--test 10000] [--out docs/digits/energy_rule.md]

``reliable`` is the MC rule (predictive entropy <= the calibrated threshold at T=30) and, since
2026-12-03, the energy rule (energy of the eval-mode logits <= its quantile on the ``val`` digits)
and the distance rule (cosine distance of the trunk's features to the nearest of 3,000 training
digits <= its quantile on ``val``); lensgraph/training/calibrate_digits.py. This sweeps the two
quantiles and reports, for the MNIST test digits through the served preprocessing, the share marked
reliable and the accuracy among them, and for each non-digit set of lensgraph.evaluation.ood the
share *not* reliable; the MC rule alone is the first row. Thresholds come from ``val`` only; the
test digits and the non-digits are only looked at. The weights are the committed ones
(weights/digits); the MC masks are seeded.
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
# (energy quantile, distance quantile); None: the rule is off.
QUANTILES = ((0.95, None), (0.97, None), (0.99, None), (None, 0.97), (0.99, 0.97), (0.99, 0.98), (0.98, 0.98),
             (0.985, 0.975))
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
    from lensgraph.training.calibrate_digits import (
        BANK_SEED, BANK_SIZE, distances, energies, feature_bank, load_model, mc_probabilities, served_view)
    from lensgraph.uncertainty.mc_dropout import summarize

    model = load_model(weights / "digit_cnn.pth")
    calibration = yaml.safe_load((weights / "calibration.yaml").read_text())
    mc_threshold = float(calibration["thresholds"][SAMPLES])
    bank_record = (calibration.get("distance") or {}).get("bank") or {"size": BANK_SIZE, "seed": BANK_SEED}
    bank = feature_bank(model, int(bank_record["size"]), int(bank_record["seed"]))

    def scored(images: np.ndarray, seed: int):
        summary = summarize(mc_probabilities(model, images, SAMPLES, np.random.default_rng(seed)))
        return summary.prediction, summary.score(calibration["score"]), energies(model, images), distances(model, images, bank)

    from lensgraph.training.upload_views import mixed_views

    val_images = mixed_views(load_split("val").images, [int(calibration.get("seed", 0)), 5])  # as calibrated
    val_energy, val_distance = energies(model, val_images), distances(model, val_images, bank)
    test = load_split("test")
    prediction, test_score, test_energy, test_distance = scored(served_view(test.images[:test_count]), 1)
    right = prediction == test.labels[:test_count]
    others = {k: scored(v, 2)[1:] for k, v in _non_digit_sets(settings.assets_dir()).items()}
    rows = []
    for q_energy, q_distance in ((None, None), *QUANTILES):
        e_cut = np.inf if q_energy is None else float(np.quantile(val_energy, q_energy))
        d_cut = np.inf if q_distance is None else float(np.quantile(val_distance, q_distance))

        def accept(score, energy, distance):
            return (score <= mc_threshold) & (energy <= e_cut) & (distance <= d_cut)

        name = " and ".join(["MC"] + ([f"energy <= val q{q_energy:g}"] if q_energy else [])
                            + ([f"distance <= val q{q_distance:g}"] if q_distance else []))
        accepted = accept(test_score, test_energy, test_distance)
        rows.append({
            "rule": "MC only" if name == "MC" else name,
            "energy_threshold": None if q_energy is None else round(e_cut, 3),
            "distance_threshold": None if q_distance is None else round(d_cut, 4),
            "test_reliable": round(float(accepted.mean()), 4),
            "accuracy_reliable": round(float(right[accepted].mean()), 4),
            "rejected": {k: round(float(np.mean(~accept(*v))), 3) for k, v in others.items()},
        })
    return {"test_digits": test_count, "sizes": {k: len(v[0]) for k, v in others.items()}, "rows": rows,
            "mc_threshold": mc_threshold,
            "calibrated": {rule: (calibration.get(rule) or {}).get("quantile") for rule in ("energy", "distance")}}


def render(result: dict, command: str) -> str:
    kinds = list(result["sizes"])
    lines = ["# Digits: the energy and distance rules", "",
             f"`{command}`, {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, {machine()}. "
             f"Written by benchmarks/digits_energy_rule.py (its docstring says what is measured). "
             f"MC rule: predictive entropy <= {result['mc_threshold']:.4f} at T={SAMPLES}; served quantiles: "
             f"energy {result['calibrated']['energy']}, distance {result['calibrated']['distance']}. "
             f"Test digits: the first {result['test_digits']} of MNIST test.", "",
             "| rule | energy threshold | distance threshold | test digits reliable | accuracy among them | "
             + " | ".join(f"{k} ({result['sizes'][k]}) not reliable" for k in kinds) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(kinds)]
    for r in result["rows"]:
        lines.append(f"| {r['rule']} | {'' if r['energy_threshold'] is None else r['energy_threshold']} | "
                     f"{'' if r['distance_threshold'] is None else r['distance_threshold']} | "
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
