"""results.json -> results.md (tables, the targets of issue 5) and PNG plots.

    python -m benchmarks.report            # re-render docs/benchmarks/results.md from results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("floor", "lensgraph", "lensgraph-serve-defaults", "baseline-fastapi", "bentoml", "triton")


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _served(records: list[dict], pipeline: str, system: str) -> dict[int, dict]:
    return {r["concurrency"]: r for r in records
            if r.get("pipeline") == pipeline and r["system"] == system and r.get("concurrency")}


def _floor(records: list[dict], pipeline: str) -> tuple[dict | None, dict | None]:
    rows = [r for r in records if r.get("pipeline") == pipeline and r["system"] == "floor"]
    latency = next((r for r in rows if r.get("concurrency") == 1), None)
    best = next((r for r in rows if r.get("concurrency") is None), None)
    return latency, best


def saturation(points: dict[int, dict]) -> dict | None:
    return max(points.values(), key=lambda r: r["throughput_rps"]) if points else None


def pipeline_table(records: list[dict], pipeline: str) -> list[str]:
    latency, best = _floor(records, pipeline)
    lines = ["| system | req/s at saturation (concurrency) | x floor | p50 / p99 ms @1 | @8 | @32 | CPU s / req | memory MiB | failures | client CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if latency and best:
        lines.append(f"| floor (in-process) | {best['throughput_rps']:.1f} (batch {best['batch_size']}, {best.get('workers', 1)}x{best.get('ort_threads', 2)} threads) | 1.00 | "
                     f"{latency['p50_ms']:.1f} / {latency['p99_ms']:.1f} | | | {best['cpu_s_per_request']:.4f} | "
                     f"{best['rss_mb']:.0f} | 0 | |")
    for system in ORDER[1:]:
        points = _served(records, pipeline, system)
        if not points:
            continue
        sat = saturation(points)
        ratio = f"{sat['throughput_rps'] / best['throughput_rps']:.2f}" if best else ""
        cells = [f"{points[c]['p50_ms']:.1f} / {points[c]['p99_ms']:.1f}" if c in points else "" for c in (1, 8, 32)]
        failures = sum(p["failures"] for p in points.values())
        lines.append(f"| {system} | {sat['throughput_rps']:.1f} ({sat['concurrency']}) | {ratio} | {cells[0]} | "
                     f"{cells[1]} | {cells[2]} | {sat['cpu_s_per_request']:.4f} | {sat['rss_mb']:.0f} | {failures} | "
                     f"{sat['client_cpu_share']:.2f} |")
    return lines


def targets(records: list[dict]) -> list[str]:
    out = []
    latency, best = _floor(records, "classify")
    points = _served(records, "classify", "lensgraph")
    if best and points:
        sat = saturation(points)
        ratio = sat["throughput_rps"] / best["throughput_rps"]
        out.append(f"| classify: served >= 0.85 x floor at saturation | {sat['throughput_rps']:.1f} / "
                   f"{best['throughput_rps']:.1f} = {ratio:.2f} | {'met' if ratio >= 0.85 else 'missed'} |")
    if latency and 1 in points:
        gap = points[1]["p50_ms"] - latency["p50_ms"]
        out.append(f"| classify: p50 at concurrency 1 within 5 ms of the floor | {points[1]['p50_ms']:.1f} - "
                   f"{latency['p50_ms']:.1f} = {gap:+.1f} ms | {'met' if gap <= 5 else 'missed'} |")
    digits = _served(records, "digits", "lensgraph")
    if digits:
        ok = [r for r in digits.values() if r["throughput_rps"] >= 100 and r["p99_ms"] <= 100 and r["failures"] == 0]
        shown = max(ok, key=lambda r: r["throughput_rps"]) if ok else saturation(digits)
        out.append(f"| digits T=30: >= 100 req/s with p99 <= 100 ms, no failures | {shown['throughput_rps']:.1f} req/s, "
                   f"p99 {shown['p99_ms']:.1f} ms, {shown['failures']} failures at concurrency {shown['concurrency']} | "
                   f"{'met' if ok else 'missed'} |")
    ours = _served(records, "classify", "lensgraph").get(32)
    for other in ("baseline-fastapi", "bentoml", "triton"):
        theirs = _served(records, "classify", other).get(32)
        if ours and theirs:
            ahead = ours["throughput_rps"] > theirs["throughput_rps"]
            out.append(f"| classify at concurrency 32: lensgraph ahead of {other} | {ours['throughput_rps']:.1f} vs "
                       f"{theirs['throughput_rps']:.1f} req/s | {'met' if ahead else 'missed'} |")
    if not out:
        return []
    return ["| target | measured | |", "|---|---|---|", *out]


def plots(records: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipelines = [p for p in ("classify", "faces", "digits") if any(r.get("pipeline") == p for r in records)]
    if not pipelines:
        return []
    names = []
    for metric, label, filename in (("throughput_rps", "requests/s", "throughput.png"),
                                    ("p99_ms", "p99 latency (ms)", "latency_p99.png")):
        fig, axes = plt.subplots(1, len(pipelines), figsize=(5 * len(pipelines), 4), squeeze=False)
        for ax, pipeline in zip(axes[0], pipelines):
            for system in ORDER[1:]:
                points = _served(records, pipeline, system)
                if points:
                    xs = sorted(points)
                    ax.plot(xs, [points[x][metric] for x in xs], marker="o", label=system)
            latency, best = _floor(records, pipeline)
            if metric == "throughput_rps" and best:
                ax.axhline(best["throughput_rps"], color="black", linestyle="--", label="floor (in-process, best batch)")
            if metric == "p99_ms":
                ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_title(pipeline)
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=90)
        plt.close(fig)
        names.append(filename)
    return names


def write_report(records: list[dict], out: Path, meta: dict) -> None:
    lines = ["# Benchmark: lensgraph against the floor, Serve's defaults, a single-process baseline and the peers", "",
             f"Reproduce: `{meta['command']}` (or `make benchmark`). Raw records: [results.json](results.json).", "",
             f"Measured {meta['date']} on {meta['machine']}; {meta['seconds']:g} s per point after a 3 s warm-up, "
             "closed loop (each connection sends its next request when answered), systems one after another. "
             f"Load average before / after: {', '.join(f'{x:.2f}' for x in meta['load_before'])} / "
             f"{', '.join(f'{x:.2f}' for x in meta['load_after'])}.", "",
             "*x floor*: served requests/s at saturation over the floor's best images/s. *CPU s / req*: CPU seconds "
             "of the server's whole process tree per answered request, at saturation. *memory*: PSS of the server's "
             "process tree (floor: what this process grew by, holding every model twice, for 1 and 2 ONNX Runtime "
             "threads, after batches of up to 32: an upper bound, not one server's footprint). *client CPU*: the load "
             "generator's share of one core. Latency is end to end as the client sees it. Floor: batch size, worker "
             "threads x ONNX Runtime threads of its best run (benchmarks/floor.py).", ""]
    for pipeline, description in meta.get("workloads", {}).items():
        lines += [f"## {pipeline}", "", f"Requests: {description}.", "", *pipeline_table(records, pipeline), ""]
    errors = [r for r in records if r.get("error")]
    if errors:
        lines += ["## Systems that did not run", ""] + [f"- {r['system']}: {r['error'][:300]}" for r in errors] + [""]
    target_lines = targets(records)
    if target_lines:
        lines += ["## Targets (issue 5)", "", *target_lines, ""]
    for name in plots(records, out):
        lines += [f"![{name}]({name})", ""]
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "benchmarks"
    records = json.loads((folder / "results.json").read_text())
    write_report(records, folder, json.loads((folder / "results_meta.json").read_text()))
