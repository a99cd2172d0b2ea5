"""``lensgraph evaluate digits``: the accuracy and uncertainty report of the served digit model.

    lensgraph models build --only digits && lensgraph evaluate digits    # -> docs/digits/report.md + PNGs

Needs $LENSGRAPH_ASSETS (MNIST and the photos) and matplotlib (the 'dev' extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lensgraph import settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a served model (digits)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = p.add_subparsers(dest="evaluate_command", required=True)
    d = esub.add_parser("digits", help="accuracy, calibration, risk-coverage, AUROCs for errors and non-digits")
    d.add_argument("--repository", help=f"model repository (default ${settings.REPOSITORY_ENV} or ./model_repository)")
    d.add_argument("--out", default="docs/digits", help="output folder (default docs/digits)")
    d.add_argument("--samples", type=int, help="MC samples T (default: the model card's)")
    d.add_argument("--seed", type=int, default=0, help="seed of the masks and the non-digit images (default 0)")
    d.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    d.set_defaults(func=run_digits)


def run_digits(args: argparse.Namespace) -> int:
    from lensgraph.errors import WeightsNotFound
    from lensgraph.evaluation.digits_report import evaluate

    assets = settings.assets_dir()
    if assets is None:
        raise WeightsNotFound(f"set ${settings.ASSETS_ENV} to the assets folder (MNIST and photos)")
    result = evaluate(settings.model_repository_dir(args.repository), assets, Path(args.out), args.samples,
                      args.seed, args.threads)
    print(f"wrote {Path(args.out) / 'report.md'} (test accuracy {result['test']['accuracy_served_mc']:.4%})")
    return 0
