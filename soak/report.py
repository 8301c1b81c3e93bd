"""soak/report.json and soak/report.md (both git-ignored), and the table printed at the end."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_CASES_IN_MD = 25


def _value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k or '-'} {v}" for k, v in value.items()) or "-"
    return str(value)


def table(checks) -> str:
    rows = ["| invariant | value | must be | ok |", "| --- | --- | --- | --- |"]
    for check in checks:
        rows.append(f"| {check.name} | {_value(check.value)} | {check.expected} | {'yes' if check.ok else '**NO**'} |")
    return "\n".join(rows)


def write(summary: dict, checks, *, directory: Path = HERE) -> tuple[Path, Path]:
    data = {**summary, "checks": [check.as_dict() for check in checks]}
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path = directory / "report.md"
    md_path.write_text(markdown(summary, checks))
    return json_path, md_path


def markdown(summary: dict, checks) -> str:
    failed = [c for c in checks if not c.ok]
    lines = [
        "# Soak report",
        "",
        f"Verdict: **{'PASS' if not failed else f'FAIL ({len(failed)} invariants broken)'}**",
        "",
        "| run | |",
        "| --- | --- |",
    ]
    for key in ("started", "refunds_target", "bags", "seed", "chaos_seconds", "settle", "duration_seconds", "log_dir"):
        if key in summary:
            lines.append(f"| {key} | {_value(summary[key])} |")
    faults = summary.get("faults", {})
    if faults:
        lines.append(
            f"| Stripe calls faulted | {faults.get('faulted_calls')} of {faults.get('stripe_calls')} "
            f"({faults.get('faulted_percent')} %): {_value(faults.get('faulted_by_kind', {}))} |"
        )
    if "chaos_counts" in summary:
        lines.append(f"| chaos | {_value(summary['chaos_counts'])} |")
    if "self_deaths" in summary:
        lines.append(f"| processes that died on their own | {len(summary['self_deaths'])} |")
    if "intents" in summary:
        lines.append(f"| intents | {_value(summary['intents'])} |")
    lines += ["", "## Invariants", "", table(checks), ""]
    for check in checks:
        if not check.cases and not check.note:
            continue
        lines += [f"### {check.name}", ""]
        if check.note:
            lines += [check.note, ""]
        for case in check.cases[:MAX_CASES_IN_MD]:
            lines.append(f"- {case}")
        if len(check.cases) > MAX_CASES_IN_MD:
            lines.append(f"- ... and {len(check.cases) - MAX_CASES_IN_MD} more (report.json)")
        lines.append("")
    if summary.get("self_deaths"):
        lines += ["## Processes that died on their own", ""]
        for death in summary["self_deaths"]:
            lines.append(f"- {death['service']} exit {death['returncode']}: `{death['log_tail'].splitlines()[-1:]}`")
        lines.append("")
    return "\n".join(lines) + "\n"
