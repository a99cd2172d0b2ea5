"""The in-process optimisation study (issue 5): what ONNX Runtime settings, batch size, INT8,
the uint8 transport, the inference engine and memory mean for lensgraph's models on this machine.

    python -m benchmarks.optimization            # about 15 minutes on a quiet 2-core machine
    python -m benchmarks.optimization --quick --out /tmp/opt   # a smoke run of every section

Writes ``optimization.json`` and ``optimization.md`` into ``--out`` (default docs/benchmarks).
Needs the built model repository ($LENSGRAPH_MODEL_REPOSITORY) and the assets ($LENSGRAPH_ASSETS).
Derived models (quantised, float-input) go to ``--work`` (default .bench/optimization, gitignored).
No Ray: everything runs in this process, and in short-lived child processes for memory and torch.compile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks.optimization import engines, int8, memory, report, sections
from benchmarks.optimization.timing import Budget, load_average, machine_facts
from lensgraph import settings

ROOT = Path(__file__).resolve().parents[2]


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and value.startswith(f"{ROOT}/"):
        return value[len(f"{ROOT}/"):]
    return value


def _memory_models(ctx: sections.Context, results: dict) -> dict[str, Path]:
    models = {name: ctx.model(name) for name in ("classifier", "face_detector", "landmarks", "digits")}
    for model in ("classifier", "digits"):
        for name, variant in results.get("int8", {}).get(model, {}).get("variants", {}).items():
            if name != "fp32" and "path" in variant and "error" not in variant:
                models[f"{model} ({name})"] = Path(variant["path"])
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short windows and fewer images: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "optimization")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads unless a row varies them")
    parser.add_argument("--seconds", type=float, help="timed seconds per figure (default 5, quick 1)")
    parser.add_argument("--only", nargs="+", choices=list(report.SECTIONS), help="run only these sections")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out of section 6")
    parser.add_argument("--render-only", action="store_true", help="rewrite optimization.md from the JSON in --out")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.render_only:
        results = json.loads((args.out / "optimization.json").read_text())
        (args.out / "optimization.md").write_text(report.to_markdown(results))
        return 0

    repository, assets = settings.model_repository_dir(), settings.assets_dir()
    if assets is None:
        parser.error(f"set ${settings.ASSETS_ENV} to the assets folder")
    budget = Budget(0.3, args.seconds or 1.0) if args.quick else Budget(1.0, args.seconds or 5.0)
    ctx = sections.Context(repository, assets, args.work.resolve(), budget, args.threads,
                           creations=2 if args.quick else 5, quick=args.quick)
    ctx.work.mkdir(parents=True, exist_ok=True)
    results: dict = {"meta": {
        "command": " ".join(["python -m benchmarks.optimization", *argv]),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(), "quick": args.quick, "threads": args.threads,
        "budget": {"warmup_s": budget.warmup_s, "measure_s": budget.measure_s},
        "repository": str(repository), "work": str(ctx.work),
    }, "sections": {}}
    runs = {
        "graph_levels": lambda: sections.graph_levels(ctx),
        "threads": lambda: sections.threads(ctx),
        "batch_sizes": lambda: sections.batch_sizes(ctx),
        "int8": lambda: int8.study(ctx),
        "transport": lambda: sections.transport(ctx),
        "engines": lambda: engines.study(ctx, compile_=not args.no_compile),
        "memory": lambda: memory.measure(_memory_models(ctx, results), args.threads),
    }
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for key, run in runs.items():
        if args.only and key not in args.only:
            continue
        print(f"[{time.perf_counter() - started:6.0f} s] {report.SECTIONS[key][0]} ...", flush=True)
        info = {"load_before": load_average()}
        t0 = time.perf_counter()
        try:
            results[key] = run()
        except Exception as exc:  # noqa: BLE001 - one failed section does not lose the others
            info["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        info.update(load_after=load_average(), elapsed_s=round(time.perf_counter() - t0, 1))
        results["sections"][key] = info
        results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
        (args.out / "optimization.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    markdown = report.to_markdown(_jsonable(results))
    (args.out / "optimization.md").write_text(markdown)
    print(markdown)
    return 1 if any("error" in s for s in results["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
