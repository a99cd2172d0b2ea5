"""``lensgraph deploy kuberay``: the RayService manifest from the template, serve_config.yaml, a profile
and configs/serve.env (``make manifests`` writes deploy/kuberay/rayservice.yaml with it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lensgraph.deploy import kuberay


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="generate deployment manifests")
    dsub = p.add_subparsers(dest="deploy_command", required=True)
    k = dsub.add_parser("kuberay", help="the KubeRay RayService manifest (serveConfigV2 from the Serve configs)")
    k.add_argument("--template", type=Path, default=kuberay.TEMPLATE, help=f"cluster template (default {kuberay.TEMPLATE})")
    k.add_argument("--serve-config", type=Path, default=kuberay.SERVE_CONFIG, help=f"base Serve config (default {kuberay.SERVE_CONFIG})")
    profile = k.add_mutually_exclusive_group()
    profile.add_argument("--profile", type=Path, default=kuberay.PROFILE,
                         help=f"profile merged on top (default {kuberay.PROFILE}); without GPUs the GPU group is dropped")
    profile.add_argument("--no-profile", dest="profile", action="store_const", const=None, help="the base config alone")
    k.add_argument("--serve-env", type=Path, default=kuberay.SERVE_ENV, help=f"Serve environment (default {kuberay.SERVE_ENV})")
    k.add_argument("--output", "-o", default="-", help="file to write, or - for stdout (default)")
    k.add_argument("--check", action="store_true", help="write nothing; exit 1 if --output differs from what would be written")
    k.set_defaults(func=run_kuberay)


def _from_cwd(path: Path | None) -> Path | None:
    """Relative paths are relative to where the command runs; the defaults to the checkout root."""
    if path is None or path.is_absolute():
        return path
    return path.resolve() if path.exists() else kuberay.project_root() / path


def run_kuberay(args: argparse.Namespace) -> int:
    import yaml

    from pipelines.config_check import check

    root = kuberay.project_root()
    try:
        text = kuberay.render(root, template=_from_cwd(args.template), serve_config=_from_cwd(args.serve_config),
                              profile=_from_cwd(args.profile), serve_env_file=_from_cwd(args.serve_env))
    except FileNotFoundError as exc:
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    serve_config = yaml.safe_load(yaml.safe_load(text)["spec"]["serveConfigV2"])
    problems = check(serve_config)
    if problems:
        print(f"serveConfigV2 fails the strict Serve config check ({len(problems)} problem(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    if args.output == "-":
        if args.check:
            print("--check needs --output FILE", file=sys.stderr)
            return 2
        sys.stdout.write(text)
        return 0
    output = Path(args.output)
    if args.check:
        if not output.exists() or output.read_text() != text:
            print(f"{output} is stale: run `make manifests`", file=sys.stderr)
            return 1
        print(f"{output}: up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0
