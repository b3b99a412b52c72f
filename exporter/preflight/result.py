"""What one preflight check concluded."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """``evidence`` says what was read and found; ``fix`` what to do about a warn or fail."""

    check: str
    status: Status
    evidence: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status.value, "evidence": self.evidence, "fix": self.fix}


def passed(check: str, evidence: str) -> CheckResult:
    return CheckResult(check, Status.PASS, evidence)


def warned(check: str, evidence: str, fix: str) -> CheckResult:
    return CheckResult(check, Status.WARN, evidence, fix)


def failed(check: str, evidence: str, fix: str) -> CheckResult:
    return CheckResult(check, Status.FAIL, evidence, fix)


def skipped(check: str, reason: str) -> CheckResult:
    return CheckResult(check, Status.SKIP, reason)
