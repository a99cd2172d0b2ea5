"""``lensgraph config check FILE...``: strict validation of Serve configs (unknown keys are errors)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check Serve configs strictly")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="reject unknown keys, bad user_config and inconsistent batching")
    check.add_argument("files", nargs="+", type=Path)
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from pipelines.config_check import check_file

    failed = 0
    for path in args.files:
        problems = check_file(path)
        if problems:
            failed += 1
            print(f"{path}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0
