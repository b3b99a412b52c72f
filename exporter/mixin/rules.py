"""Prometheus rule groups (recording + alerting) as plain data, ready for YAML.

Rules are written without a selector; :func:`group_dict` adds ``mixin.selector`` (default
``job="blackwell-exporter"``) to every vector selector of every expression, recorded series included.

This is the interface the fault drills use: ``rule_groups(config, time_scale=0.01)`` gives the
production rules with every ``for:``, range window and offset 100x shorter, so an alert that
needs 10 minutes in production fires in 6 seconds against the simulated exporter.
"""

from __future__ import annotations

from exporter.mixin.alerts import alert_groups
from exporter.mixin.config import MixinConfig
from exporter.mixin.domain import domain_recording_groups
from exporter.mixin.model import Alert, Group
from exporter.mixin.promql import scale, scale_expr, with_selector
from exporter.mixin.recording import recording_groups
from exporter.mixin.slo import slo_recording_groups

MAX_RULES_PER_GROUP = 20


def groups(config: MixinConfig) -> dict[str, list[Group]]:
    """Rule groups by the file they are written to under ``alerts/`` (without ``.yaml``)."""
    return {
        "recording-rules": recording_groups(config) + slo_recording_groups(config) + domain_recording_groups(config),
        "alerts": alert_groups(config),
    }


def rule_groups(config: MixinConfig, time_scale: float = 1.0) -> list[dict]:
    """Every group as Prometheus rule-file data; ``time_scale`` < 1 shortens all durations."""
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    return [group_dict(group, config, time_scale) for file_groups in groups(config).values() for group in file_groups]


def group_dict(group: Group, config: MixinConfig, time_scale: float = 1.0) -> dict:
    if len(group.rules) > MAX_RULES_PER_GROUP:
        raise ValueError(f"group {group.name} has {len(group.rules)} rules; split it (at most {MAX_RULES_PER_GROUP})")
    rules = []
    for rule in group.rules:
        data = (rule.as_rule(config.runbook_base_url, config.dashboard_base_url) if isinstance(rule, Alert)
                else rule.as_rule())
        data["expr"] = scale_expr(with_selector(data["expr"], config.matchers), time_scale)
        if "for" in data:
            data["for"] = scale(data["for"], time_scale)
        rules.append(data)
    out: dict = {"name": group.name}
    if group.interval:
        out["interval"] = group.interval
    out["rules"] = rules
    return out
