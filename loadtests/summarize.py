"""Summarise a locust run from its CSV files into a short Markdown table.

    python loadtests/summarize.py [--prefix reports/loadtest] [--out reports/loadtest_summary.md] [--title TEXT]

Reads ``PREFIX_stats.csv`` (required), ``PREFIX_stats_history.csv`` (duration and peak users, when
present) and ``PREFIX_failures.csv`` (the most frequent failure messages, when present), prints the
summary and writes it to ``--out`` (default: ``PREFIX_summary.md``). Exits 1 when the stats file is
missing or records no request at all, so a run that never reached the server cannot pass as a
summary of nothing. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

TOP_FAILURES = 10


@dataclass(frozen=True)
class RouteStats:
    method: str
    name: str
    requests: int
    failures: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @property
    def route(self) -> str:
        return f"{self.method} {self.name}".strip()


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_stats(path: Path) -> tuple[list[RouteStats], RouteStats | None]:
    """Per-route rows and the 'Aggregated' row of a locust ``_stats.csv``."""
    routes, total = [], None
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            stats = RouteStats(
                method=row["Type"], name=row["Name"],
                requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                rps=_number(row["Requests/s"]) or 0.0,
                p50=_number(row["50%"]), p95=_number(row["95%"]), p99=_number(row["99%"]),
                max=_number(row["Max Response Time"]),
            )
            if row["Name"] == "Aggregated":
                total = stats
            else:
                routes.append(stats)
    return routes, total


def read_history(path: Path) -> tuple[float, int] | None:
    """(seconds from the first to the last history row, peak user count), or None without rows."""
    if not path.exists():
        return None
    stamps, users = [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            stamps.append(int(row["Timestamp"]))
            users.append(int(row["User Count"]))
    if not stamps:
        return None
    return float(max(stamps) - min(stamps)), max(users)


def read_failures(path: Path) -> list[tuple[str, str, int]]:
    """(route, message, occurrences), most frequent first."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = [(f"{r['Method']} {r['Name']}", r["Error"], int(r["Occurrences"])) for r in csv.DictReader(handle)]
    return sorted(rows, key=lambda r: -r[2])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _row(stats: RouteStats, label: str | None = None) -> str:
    share = f"{100 * stats.failures / stats.requests:.1f}%" if stats.requests else "-"
    return (f"| {label or stats.route} | {stats.requests} | {stats.failures} ({share}) | {stats.rps:.2f} "
            f"| {_ms(stats.p50)} | {_ms(stats.p95)} | {_ms(stats.p99)} | {_ms(stats.max)} |")


def render(prefix: Path, title: str | None = None) -> str:
    routes, total = read_stats(Path(f"{prefix}_stats.csv"))
    history = read_history(Path(f"{prefix}_stats_history.csv"))
    failures = read_failures(Path(f"{prefix}_failures.csv"))
    lines = ["# Load test summary", ""]
    if title:
        lines += [f"Run: `{title}`", ""]
    if history:
        seconds, peak = history
        lines += [f"Duration about {seconds:.0f} s (first to last stats sample), peak {peak} users.", ""]
    lines += [
        "Latencies in milliseconds (locust's percentiles, rounded); rps = requests per second over the run.",
        "",
        "| route | requests | failures | rps | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(stats) for stats in sorted(routes, key=lambda s: s.route)]
    if total is not None:
        lines.append(_row(total, "**all**"))
    if failures:
        lines += ["", f"## Failures (most frequent {min(len(failures), TOP_FAILURES)} of {len(failures)} kinds)", "",
                  "| route | occurrences | message |", "|---|---:|---|"]
        for route, message, count in failures[:TOP_FAILURES]:
            text = message.replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| {route} | {count} | {text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="reports/loadtest", help="locust's --csv prefix (default: %(default)s)")
    parser.add_argument("--out", help="where to write the Markdown (default: PREFIX_summary.md)")
    parser.add_argument("--title", help="a line saying what was run (e.g. the make command)")
    args = parser.parse_args(argv)
    prefix = Path(args.prefix)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        print(f"summarize: {stats} not found: did locust run with --csv {prefix}?", file=sys.stderr)
        return 1
    routes, total = read_stats(stats)
    if not routes or total is None or total.requests == 0:
        print(f"summarize: {stats} records no request: nothing to summarise", file=sys.stderr)
        return 1
    text = render(prefix, args.title)
    out = Path(args.out) if args.out else Path(f"{prefix}_summary.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")
    print(f"(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
