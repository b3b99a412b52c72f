"""The mixin as a mixin: a configured selector reaches every vector selector of every rule and panel
query (checked with a real PromQL parser, not the rewriter under test), alerts switch off by name,
and every dashboard has job and cluster variables."""

from __future__ import annotations

import re

import promql_parser
import pytest

from exporter.mixin import dashboards, runbooks
from exporter.mixin.alerts import alert_names
from exporter.mixin.config import MixinConfig
from exporter.mixin.promql import with_selector
from exporter.mixin.rules import rule_groups

# Grafana's macros are not PromQL; a stand-in duration keeps the expression parseable.
GRAFANA_MACROS = re.compile(r"\$__(rate_interval|interval|range)")
CONSTANT = re.compile(r"vector\([0-9.e+]+\)")  # a reference line (a configured peak) selects no series


def vector_selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector in ``expr``, from Prometheus' own grammar (promql-parser)."""
    found: list[promql_parser.VectorSelector] = []

    def walk(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        elif isinstance(node, promql_parser.MatrixSelector):
            found.append(node.vector_selector)
        elif isinstance(node, promql_parser.Call):
            for argument in node.args:
                walk(argument)
        elif isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
        elif isinstance(node, promql_parser.AggregateExpr):
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
        elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            walk(node.expr)

    walk(promql_parser.parse(GRAFANA_MACROS.sub("5m", expr)))
    return found


def matcher_set(selector: promql_parser.VectorSelector) -> set[tuple[str, str, str]]:
    return {(m.name, str(m.op), m.value) for m in selector.matchers.matchers}


def expected(matchers: str) -> set[tuple[str, str, str]]:
    return matcher_set(promql_parser.parse("x{" + matchers + "}"))


def rule_expressions(config: MixinConfig) -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in rule_groups(config) for rule in group["rules"]]


def panel_expressions(config: MixinConfig) -> list[tuple[str, str]]:
    return [(f"{board['uid']}: {panel['title']}", target["expr"])
            for board in dashboards.all_dashboards(config) for panel in board["panels"]
            for target in panel["targets"]]


CONFIGS = [MixinConfig(), MixinConfig(job="gpu-fleet"), MixinConfig(selector='job=~"blackwell-(a|b)"')]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.matchers)
def test_the_selector_reaches_every_vector_selector_of_every_rule(config):
    wanted = expected(config.matchers)
    for name, expr in rule_expressions(config):
        selectors = vector_selectors(expr)
        assert selectors, name
        for selector in selectors:
            assert wanted <= matcher_set(selector), f"{name}: {selector} lacks {config.matchers}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.matchers)
def test_the_selector_and_the_job_and_cluster_variables_reach_every_panel_query(config):
    wanted = expected(config.matchers) | expected(dashboards.VARIABLE_MATCHERS)
    for name, expr in panel_expressions(config):
        selectors = vector_selectors(expr)
        assert selectors or CONSTANT.fullmatch(expr), name
        for selector in selectors:
            assert wanted <= matcher_set(selector), f"{name}: {selector}"


def test_every_dashboard_has_job_and_cluster_variables_that_use_the_selector():
    config = MixinConfig(job="gpu-fleet")
    for board in dashboards.all_dashboards(config):
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert {"job", "cluster", "instance", "gpu"} <= variables.keys(), board["uid"]
        assert 'job="gpu-fleet"' in variables["job"]["query"]
        assert variables["cluster"]["allValue"] == ".*"  # "All" matches series without a cluster label


def test_the_rewrite_leaves_functions_grouping_strings_and_durations_alone():
    rewritten = with_selector('sum by (job) (rate(a{x="y"}[5m])) / on (job) group_left () b offset 1d '
                              '> bool scalar(label_replace(c, "d", "$1", "e", "(.*)"))', 'job="j"')
    assert rewritten == ('sum by (job) (rate(a{job="j", x="y"}[5m])) / on (job) group_left () b{job="j"} offset 1d '
                         '> bool scalar(label_replace(c{job="j"}, "d", "$1", "e", "(.*)"))')


def test_disabled_alerts_leave_the_rules_and_runbooks_and_keep_the_rest():
    config = MixinConfig(disabled_alerts=["BlackwellGPUStraggler", "BlackwellTTFTBudgetBurn"])
    names = {name for name, _ in rule_expressions(config)}
    assert "BlackwellGPUStraggler" not in names and "BlackwellTTFTBudgetBurn" not in names
    assert set(alert_names()) - names == {"BlackwellGPUStraggler", "BlackwellTTFTBudgetBurn"}
    assert "BlackwellGPUStraggler" not in runbooks.render_all(config)


def test_disabling_an_alert_the_mixin_does_not_ship_is_an_error():
    with pytest.raises(ValueError, match="BlackwellNoSuchAlert"):
        rule_groups(MixinConfig(disabled_alerts=["BlackwellNoSuchAlert"]))


@pytest.mark.parametrize("selector", ['cluster="eu"', "job=blackwell", 'job="a"}'])
def test_a_selector_that_recorded_series_could_not_honour_is_rejected(selector):
    with pytest.raises(ValueError):
        MixinConfig(selector=selector)
