"""``make audit``: known vulnerabilities of the installed dependencies, from PyPI's advisory data.

Runs pip-audit on this environment (what ``make setup`` installed from the pins in pyproject.toml;
the editable lensgraph itself is skipped) against PyPI's vulnerability data, and against OSV when PyPI
gives none. Prints one line per finding, then a summary. When neither service can be reached, or one
answers for none of the packages (a registry mirror without PyPI's JSON API does that), it prints
``not checked: <reason>``: an audit that checked nothing never reads as "no vulnerabilities".

Exit status: 0 whatever is found, so CI reports findings without failing (docs/security.md says why);
``--strict`` (``AUDIT_STRICT=1 make audit``) exits 1 on a finding.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter

SERVICES = ("pypi", "osv")


def _run(service: str, timeout_s: int) -> tuple[dict | None, str]:
    command = [sys.executable, "-m", "pip_audit", "--vulnerability-service", service, "--skip-editable",
               "--format", "json", "--progress-spinner", "off", "--timeout", str(timeout_s)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s * 40)
    except FileNotFoundError as exc:
        return None, str(exc)
    except subprocess.TimeoutExpired:
        return None, f"pip-audit -s {service} took longer than {timeout_s * 40} s"
    try:
        return json.loads(done.stdout), ""
    except json.JSONDecodeError:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return None, (lines[-1] if lines else f"pip-audit exited with {done.returncode}")[:300]


def audit(timeout_s: int = 15) -> tuple[str, list[str], list[str]]:
    """(service used or "", finding lines, summary/reason lines)."""
    reasons = []
    for service in SERVICES:
        report, error = _run(service, timeout_s)
        if report is None:
            reasons.append(f"{service}: {error}")
            continue
        dependencies = [d for d in report.get("dependencies", [])
                        if "editable" not in d.get("skip_reason", "")]  # lensgraph itself
        audited = [d for d in dependencies if "skip_reason" not in d]
        skipped = Counter(d["skip_reason"].split(":")[0] for d in dependencies if "skip_reason" in d)
        if not audited:
            why = "; ".join(f"{n} x '{r}'" for r, n in skipped.most_common(2)) or "no dependencies listed"
            reasons.append(f"{service}: answered for none of {len(dependencies)} packages ({why})")
            continue
        findings = []
        for d in audited:
            for v in d.get("vulns", []):
                aliases = ", ".join(v.get("aliases") or [])
                fixes = ", ".join(v.get("fix_versions") or []) or "none yet"
                findings.append(f"{d['name']} {d['version']}: {v['id']}" + (f" ({aliases})" if aliases else "")
                                + f"; fixed in: {fixes}")
        summary = [f"audited {len(audited)} packages against {service}: {len(findings)} known vulnerabilit"
                   + ("y" if len(findings) == 1 else "ies")]
        if skipped:
            summary.append("not audited: " + "; ".join(f"{n} x '{r}'" for r, n in skipped.most_common()))
        return service, findings, summary
    return "", [], ["not checked: " + " | ".join(reasons)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lensgraph.security.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a vulnerability is found")
    parser.add_argument("--timeout", type=int, default=15, help="socket timeout of each request, seconds")
    args = parser.parse_args(argv)
    service, findings, summary = audit(args.timeout)
    for line in findings:
        print(line)
    for line in summary:
        print(line)
    return 1 if (args.strict and findings) else 0


if __name__ == "__main__":
    sys.exit(main())
