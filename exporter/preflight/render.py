"""Results as a table for people and as JSON for programs."""

from __future__ import annotations

import json
import shutil
import textwrap

from exporter.preflight.result import CheckResult, Status


def as_json(results: list[CheckResult], origin: str) -> str:
    summary = {s.value: sum(1 for r in results if r.status is s) for s in Status}
    return json.dumps({"origin": origin, "summary": summary, "checks": [r.as_dict() for r in results]}, indent=2)


def as_table(results: list[CheckResult], origin: str, width: int | None = None) -> str:
    """One row per check; evidence and fix wrap in their own column."""
    width = width or max(100, shutil.get_terminal_size((140, 24)).columns)
    name_w = max(len("CHECK"), *(len(r.check) for r in results))
    status_w = 6
    text_w = max(30, width - name_w - status_w - 4)
    lines = [f"preflight: {origin}", f"{'CHECK':<{name_w}}  {'STATUS':<{status_w}}  EVIDENCE / FIX",
             f"{'-' * name_w}  {'-' * status_w}  {'-' * min(text_w, 60)}"]
    for r in results:
        body = textwrap.wrap(r.evidence, text_w) or [""]
        if r.fix:
            body += textwrap.wrap(f"fix: {r.fix}", text_w)
        lines.append(f"{r.check:<{name_w}}  {r.status.value.upper():<{status_w}}  {body[0]}")
        lines += [f"{'':<{name_w}}  {'':<{status_w}}  {line}" for line in body[1:]]
    counts = ", ".join(f"{sum(1 for r in results if r.status is s)} {s.value}" for s in Status)
    lines.append(f"\n{counts}")
    return "\n".join(lines) + "\n"
