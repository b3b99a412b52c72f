"""The two kinds of rule the mixin writes, before they become Prometheus YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, kw_only=True)
class Recording:
    """A recording rule; ``record`` follows ``level:metric:operations``."""

    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)

    def as_rule(self) -> dict:
        rule: dict = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclass(frozen=True, kw_only=True)
class Alert:
    """One alerting rule. Several rules may share a name (burn-rate windows); each has one runbook.

    ``summary`` is a static sentence; ``description`` may use ``$labels`` and ``$value``.
    ``dashboard`` is the uid of the dashboard to open, with ``$labels.instance`` preselected.
    """

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    dashboard: str
    for_: str = "0s"
    labels: dict[str, str] = field(default_factory=dict)
    dashboard_vars: str = "var-instance={{ $labels.instance }}"  # the link's variables; set where there is no instance

    def as_rule(self, runbook_base_url: str, dashboard_base_url: str) -> dict:
        rule: dict = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0s":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_base_url}/{self.name}.md",
            "dashboard_url": f"{dashboard_base_url}/{self.dashboard}?{self.dashboard_vars}",
        }
        return rule


@dataclass(frozen=True)
class Group:
    name: str
    rules: list[Recording | Alert]
    interval: str | None = None
