"""Entry point: ``lensgraph <command>``. Sub-commands register themselves from their own modules."""

from __future__ import annotations

import argparse
import sys

from lensgraph.errors import LensgraphError

from . import client_cmd, config_cmd, deploy_cmd, evaluate_cmd, export_cmd, keys_cmd, models_cmd, run_cmd, train_cmd

COMMANDS = (models_cmd, export_cmd, client_cmd, config_cmd, train_cmd, evaluate_cmd, deploy_cmd, keys_cmd, run_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensgraph", description="Multi-model vision inference on Ray Serve")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LensgraphError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
