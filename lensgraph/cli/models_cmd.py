"""``lensgraph models build|list``: build the repository from configs/models.yaml, or show it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lensgraph import settings
from lensgraph.repository import store

DEFAULT_CONFIG = "configs/models.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="build or list the model repository")
    msub = models.add_subparsers(dest="models_command", required=True)

    build = msub.add_parser("build", help="build every model declared in the config (incremental)")
    build.add_argument("--config", default=DEFAULT_CONFIG, help=f"models config (default {DEFAULT_CONFIG})")
    build.add_argument("--repository", help=f"output root (default ${settings.REPOSITORY_ENV} or ./model_repository)")
    build.add_argument("--only", nargs="+", metavar="NAME", help="build only these models")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--strict", action="store_true", help="exit non-zero when weights are missing too")
    build.set_defaults(func=run_build)

    lst = msub.add_parser("list", help="show the built models")
    lst.add_argument("--repository", help="repository root")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=run_list)


def run_build(args: argparse.Namespace) -> int:
    from lensgraph.repository.build import build_all
    from lensgraph.repository.spec import load_models_config

    config = Path(args.config).resolve()
    specs = load_models_config(config)
    root = settings.model_repository_dir(args.repository)
    command = "lensgraph models build " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 2 else ""
    print(f"building {len(args.only or specs)} model(s) from {config} into {root}")
    results = build_all(specs, root, config.parent, only=args.only, force=args.force, command=command.strip())
    width = max(len(r.name) for r in results) if results else 4
    for r in results:
        line = f"  {r.name:<{width}}  {r.status:<10}"
        if r.message:
            line += "  " + r.message.replace("\n", "\n" + " " * (width + 16))
        print(line)
    failed = [r for r in results if r.status == "failed" or (args.strict and r.status == "missing")]
    return 1 if failed else 0


def run_list(args: argparse.Namespace) -> int:
    root = settings.model_repository_dir(args.repository)
    rows = []
    for entry in store.list_models(root):
        card = entry.card
        rows.append(
            {
                "name": entry.name,
                "version": entry.version,
                "task": card.get("task"),
                "architecture": card.get("architecture"),
                "weights": card.get("weights", {}).get("source"),
                "real_weights": entry.weights_real,
                "inputs": card.get("inputs"),
                "outputs": card.get("outputs"),
                "parity_max_abs_diff": card.get("parity", {}).get("max_abs_diff"),
                "built_at": card.get("build", {}).get("built_at"),
                "path": str(entry.onnx_path),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models in {root}; run 'lensgraph models build' (or 'make models')")
        return 0
    header = ("NAME", "VER", "TASK", "ARCHITECTURE", "WEIGHTS", "REAL", "INPUT", "PARITY")
    table = [header]
    for r in rows:
        inp = r["inputs"][0] if r["inputs"] else {}
        shape = "x".join(str(d) for d in inp.get("shape", []))
        parity = "-" if r["parity_max_abs_diff"] is None else f"{r['parity_max_abs_diff']:.1e}"
        real = "yes" if r["real_weights"] else "NO (random)"
        table.append((r["name"], str(r["version"]), r["task"], r["architecture"], r["weights"], real, f"{inp.get('dtype', '')}[{shape}]", parity))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"\nrepository: {root}")
    return 0
