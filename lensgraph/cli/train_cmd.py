"""``lensgraph train digits``: train the MNIST digit CNN and calibrate its reliability threshold.

    lensgraph train digits                       # train (seed 0) + calibrate into weights/digits
    lensgraph train digits --calibrate-only --target-accuracy 0.999   # new target, same weights

Needs $LENSGRAPH_ASSETS (with mnist/) and torch (the 'build' extra). Then
'lensgraph models build --only digits' puts the new weights and threshold into the repository.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DEFAULT_OUTPUT = "weights/digits"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from the assets (digits)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="train_command", required=True)
    d = tsub.add_parser("digits", help="MNIST digit CNN with MC dropout, then calibration on held-out data")
    d.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    d.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    d.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output folder (default {DEFAULT_OUTPUT})")
    d.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    d.add_argument("--no-augment", action="store_true", help="train without the random affine augmentation")
    d.add_argument("--no-outlier-exposure", action="store_true",
                   help="train without the digit-derived negatives (the model is then overconfident on non-digits)")
    d.add_argument("--energy-weight", type=float, default=None,
                   help="weight of the energy-margin loss on digits and negatives (default: TrainConfig's)")
    d.add_argument("--target-accuracy", type=float, default=None,
                   help="accuracy required among predictions marked reliable (default 0.997)")
    d.add_argument("--samples", type=int, default=30, help="default MC samples T the service uses (default 30)")
    d.add_argument("--score", default=None, help="uncertainty score the threshold is put on (default predictive_entropy)")
    d.add_argument("--confidence", type=float, default=0.95,
                   help="the one-sided Wilson lower bound of the accepted accuracy at this confidence must reach "
                        "the target (default 0.95; 0 uses the point estimate)")
    d.add_argument("--calibrate-only", action="store_true",
                   help="keep the weights in --output, only recompute calibration.yaml")
    d.set_defaults(func=run_digits)


def run_digits(args: argparse.Namespace) -> int:
    from lensgraph.training.calibrate_digits import DEFAULT_SCORE, DEFAULT_TARGET, calibrate, load_model
    from lensgraph.training.digits import WEIGHTS_FILE, TrainConfig, run

    output = Path(args.output)
    target = args.target_accuracy if args.target_accuracy is not None else DEFAULT_TARGET
    score = args.score or DEFAULT_SCORE
    if not 0.5 < target <= 1.0:
        raise SystemExit("--target-accuracy must be in (0.5, 1]")
    if args.calibrate_only:
        weights = output / WEIGHTS_FILE
        if not weights.is_file():
            raise SystemExit(f"no {weights}; train first ('lensgraph train digits')")
        model = load_model(weights)
        record = calibrate(model, weights, output, target_accuracy=target, default_samples=args.samples,
                           seed=args.seed, score=score, confidence=args.confidence or None)
        print(f"wrote {output / 'calibration.yaml'}: {score} <= {record['thresholds'][args.samples]} at T={args.samples}")
        return 0
    import torch  # noqa: F401  (fail early with a clear message when the build extra is missing)

    config = TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, augment=not args.no_augment,
                         outlier_exposure=not args.no_outlier_exposure)
    if args.energy_weight is not None:
        config.energy_weight = args.energy_weight
    command = "lensgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(config, output, command, target_accuracy=target, mc_samples=args.samples, score=score,
        confidence=args.confidence or None)
    return 0
