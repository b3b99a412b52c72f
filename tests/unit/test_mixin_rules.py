"""Lint of every generated rule: names, severities, annotations, metrics, durations, config use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from exporter.catalog import series_names
from exporter.mixin import alerts as alerts_mod
from exporter.mixin.config import MixinConfig
from exporter.mixin.promql import duration, le_matcher, metric_names, scale_expr, seconds
from exporter.mixin.rules import MAX_RULES_PER_GROUP, rule_groups
from exporter.sources.simulated.model import TTFT_BUCKETS
from exporter.sources.simulated.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]
# Series every Prometheus has for its own targets; the exporter does not declare them.
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
ALERT_NAME = re.compile(r"^Blackwell[A-Z][A-Za-z0-9]+$")
RECORD_NAME = re.compile(r"^[a-z]+(_[a-z]+)*:blackwell_[a-z0-9_]+:[a-z0-9_]+$")
RANGE_OR_OFFSET = re.compile(r"\[(\w+)(?::(\w*))?\]|offset (\w+)")


@pytest.fixture(scope="module")
def groups() -> list[dict]:
    return rule_groups(MixinConfig())


def _rules(groups: list[dict], key: str) -> list[dict]:
    return [rule for group in groups for rule in group["rules"] if key in rule]


def test_groups_are_small_and_uniquely_named(groups):
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    for group in groups:
        assert 0 < len(group["rules"]) <= MAX_RULES_PER_GROUP, group["name"]


def test_alert_names_severity_and_annotations(groups):
    for rule in _rules(groups, "alert"):
        name = rule["alert"]
        assert ALERT_NAME.match(name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        assert notes["summary"].endswith(".") and "{{" not in notes["summary"], f"{name}: summary must be static"
        assert notes["summary"][0].isupper(), name
        assert "$labels" in notes["description"] or "$value" in notes["description"], f"{name}: description templated"
        assert notes["runbook_url"].endswith(f"/{name}.md"), name


def test_recording_rule_names_follow_level_metric_operations(groups):
    records = _rules(groups, "record")
    assert records
    for rule in records:
        assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_every_metric_a_rule_reads_is_declared_or_recorded(groups):
    recorded = {rule["record"] for rule in _rules(groups, "record")}
    known = series_names() | recorded | PROMETHEUS_BUILTINS
    for rule in _rules(groups, "expr"):
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads undeclared {sorted(unknown)}"


def test_metric_lint_catches_an_undeclared_name():
    assert metric_names('sum by (gpu) (rate(blackwell_not_a_metric_total{gpu="0"}[5m])) > 0') == {
        "blackwell_not_a_metric_total"}
    assert "blackwell_not_a_metric_total" not in series_names()


def test_every_scenario_alert_exists_and_has_a_runbook():
    names = set(alerts_mod.alert_names())
    expected = {alert for scenario in SCENARIOS.values() for alert in scenario.alerts}
    assert expected <= names, sorted(expected - names)
    for name in names:
        page = (REPO / alerts_mod.runbook_file(name)).read_text()
        assert page.splitlines()[1] == f"# {name}"
        headings = [line for line in page.splitlines() if line.startswith("## ")]
        assert headings == ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"], name
        assert "```promql" in page, f"{name}: diagnosis needs PromQL"


def test_runbook_urls_point_at_committed_runbooks(groups):
    base = MixinConfig().runbook_base_url
    for rule in _rules(groups, "alert"):
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(base + "/")
        assert (REPO / "runbooks" / url[len(base) + 1:]).is_file(), url


def test_dashboard_urls_point_at_generated_dashboards(groups):
    uids = {p.stem for p in (REPO / "dashboards").glob("*.json")}
    for rule in _rules(groups, "alert"):
        uid = rule["annotations"]["dashboard_url"].split("/d/")[1].split("?")[0]
        assert uid in uids, rule["alert"]


def test_burn_rate_alerts_use_the_workbook_windows(groups):
    burn = [r for r in _rules(groups, "alert") if r["alert"] == "BlackwellTTFTBudgetBurn"]
    got = {(r["labels"]["long"], r["labels"]["short"], r["labels"]["severity"]) for r in burn}
    assert got == {("1h", "5m", "critical"), ("6h", "30m", "critical"), ("1d", "2h", "warning"),
                   ("3d", "6h", "warning")}
    page = next(r for r in burn if r["labels"]["long"] == "1h")
    # 14.4x the 1% budget of a 99% objective.
    assert 'slo_error_ratio_rate1h{job="blackwell-exporter"} > 0.144' in page["expr"]
    assert 'slo_error_ratio_rate5m{job="blackwell-exporter"} > 0.144' in page["expr"]


def test_time_scale_shrinks_every_for_window_and_offset():
    production, drill = rule_groups(MixinConfig()), rule_groups(MixinConfig(), time_scale=0.01)
    for group_p, group_d in zip(production, drill, strict=True):
        for rule_p, rule_d in zip(group_p["rules"], group_d["rules"], strict=True):
            if "for" in rule_p:
                assert seconds(rule_d["for"]) == max(1, round(seconds(rule_p["for"]) * 0.01))
            windows_p = [seconds(next(w for w in m if w)) for m in RANGE_OR_OFFSET.findall(rule_p["expr"])]
            windows_d = [seconds(next(w for w in m if w)) for m in RANGE_OR_OFFSET.findall(rule_d["expr"])]
            assert windows_d == [max(1, round(w * 0.01)) for w in windows_p], rule_p["expr"]
    assert "offset 864s" in yaml.safe_dump(drill)
    assert rule_groups(MixinConfig(), 1.0) == production


def test_scale_expr_handles_subqueries_and_durations():
    assert scale_expr("max_over_time(rate(x[5m])[1h:1m]) offset 1d", 0.5) == \
        "max_over_time(rate(x[150s])[30m:30s]) offset 12h"
    assert duration(5400) == "90m" and duration(86400) == "1d" and duration(7) == "7s"
    with pytest.raises(ValueError):
        seconds("5 minutes")


def test_ttft_objective_is_a_bucket_bound_and_matches_both_spellings():
    assert MixinConfig().ttft_slo_seconds in TTFT_BUCKETS
    spellings = re.compile(le_matcher(10.0).split('"')[1].replace("\\\\", "\\"))  # the PromQL string unescaped
    assert spellings.fullmatch("10") and spellings.fullmatch("10.0") and not spellings.fullmatch("100")


# Fields that only shape links, not rule logic.
# URLs, and the selector and alert switches that tests/unit/test_mixin_selector.py specifies.
_URL_FIELDS = {"runbook_base_url", "dashboard_base_url", "selector", "disabled_alerts"}


@pytest.mark.parametrize("field", [f for f in MixinConfig.model_fields if f not in _URL_FIELDS])
def test_every_threshold_reaches_the_rules_or_dashboards(field):
    """No threshold is a literal: changing any config value changes what is generated."""
    from exporter.mixin.generate import render

    default = MixinConfig()
    value = getattr(default, field)
    if isinstance(value, list):
        changed = value[:-1] if len(value) > 1 else [*value, value[0] * 2 if isinstance(value[0], int) else "x"]
    elif isinstance(value, str):
        changed = value + "-other"
    elif isinstance(value, dict):  # ttft_slo_bounds: runtime -> bound
        changed = {**value, "sglang": 0.2}
    else:
        changed = value * 0.9 if 0 < value * 0.9 else 0.5
    other = MixinConfig(**{field: changed})
    assert render(other) != render(default), f"mixin.{field} does not change any generated file"
