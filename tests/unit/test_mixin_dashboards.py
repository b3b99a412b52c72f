"""Lint of every dashboard: Grafana's JSON schema, ids, variables, units, and every query's metrics and syntax."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from exporter.catalog import series_names
from exporter.mixin.config import MixinConfig
from exporter.mixin.dashboards import SCHEMA_VERSION, all_dashboards
from exporter.mixin.promql import metric_names
from exporter.mixin.rules import rule_groups

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "tests" / "fixtures" / "grafana_schemas"
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}

def _validator(file: str, definition: str | None = None) -> Draft7Validator:
    schema = json.loads((SCHEMAS / file).read_text())
    if definition is not None:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    return Draft7Validator(schema)


@pytest.fixture(scope="module")
def boards() -> list[dict]:
    return all_dashboards(MixinConfig())


def _panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _errors(validator: Draft7Validator, instance: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def test_dashboards_validate_against_grafana_schema(boards):
    dashboard = _validator("dashboard.jsonschema.json")
    query = _validator("prometheus.jsonschema.json")
    ts_options = _validator("timeseries.jsonschema.json", "Options")
    ts_field = _validator("timeseries.jsonschema.json", "FieldConfig")
    for board in boards:
        assert not _errors(dashboard, board), (board["uid"], _errors(dashboard, board))
        for panel in _panels(board):
            for target in panel["targets"]:
                assert not _errors(query, target), (board["uid"], panel["title"], _errors(query, target))
            if panel["type"] == "timeseries":
                assert not _errors(ts_options, panel["options"]), (panel["title"], _errors(ts_options, panel["options"]))
                custom = panel["fieldConfig"]["defaults"].get("custom", {})
                assert not _errors(ts_field, custom), (panel["title"], _errors(ts_field, custom))


def test_schema_validation_rejects_a_broken_dashboard(boards):
    broken = json.loads(json.dumps(boards[0]))
    broken["schemaVersion"] = "42"
    broken["panels"][0]["gridPos"] = {"w": 6}
    assert len(_errors(_validator("dashboard.jsonschema.json"), broken)) >= 2


def test_stable_unique_uids_tags_and_current_schema_version(boards):
    uids = [b["uid"] for b in boards]
    assert len(set(uids)) == len(uids) == 7
    for board in boards:
        assert re.fullmatch(r"[a-z0-9-]{8,40}", board["uid"])
        assert board["schemaVersion"] == SCHEMA_VERSION == 42
        assert "blackwell" in board["tags"] and len(board["tags"]) >= 3
    assert all_dashboards(MixinConfig()) == boards, "generation must be deterministic"


def test_variables_chain_datasource_job_cluster_instance_gpu(boards):
    for board in boards:
        variables = board["templating"]["list"]
        assert [v["name"] for v in variables] == ["datasource", "job", "cluster", "instance", "gpu"]
        assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
        assert all(v["datasource"]["uid"] == "${datasource}" for v in variables[1:])
        assert "$job" in variables[2]["query"], "cluster choices depend on the chosen job"
        assert "$cluster" in variables[3]["query"], "instance choices depend on the chosen cluster"
        assert "$instance" in variables[4]["query"], "gpu choices depend on the chosen instance"


def test_every_panel_has_unique_id_unit_description_and_datasource(boards):
    for board in boards:
        panels = _panels(board)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in panels:
            where = f"{board['uid']}/{panel['title']}"
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert panel.get("description", "").strip(), where
            assert panel["datasource"]["uid"] == "${datasource}", where
            assert panel["targets"], where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where


def test_panels_do_not_overlap(boards):
    for board in boards:
        cells = set()
        for panel in _panels(board):
            g = panel["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{board['uid']}/{panel['title']} overlaps another panel"
            cells |= mine


def test_rates_use_rate_interval_and_select_by_instance(boards):
    for board in boards:
        for panel in _panels(board):
            for target in panel["targets"]:
                expr = target["expr"]
                for window in re.findall(r"\b(?:rate|increase|irate)\([^\[]*\[([^\]]+)\]", expr):
                    assert window in ("$__rate_interval", "$__range"), (panel["title"], expr)
                if metric_names(expr):
                    assert "$instance" in expr, (panel["title"], expr)


def test_every_query_reads_declared_or_recorded_metrics(boards):
    recorded = {r["record"] for g in rule_groups(MixinConfig()) for r in g["rules"] if "record" in r}
    known = series_names() | recorded | PROMETHEUS_BUILTINS
    for board in boards:
        for panel in _panels(board):
            for target in panel["targets"]:
                unknown = metric_names(target["expr"]) - known
                assert not unknown, f"{board['uid']}/{panel['title']}: {sorted(unknown)}"


def concrete(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced the way Grafana would for 'All'."""
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "6h")
            .replace("$instance", ".*").replace("$gpu", ".*"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_query_parses(boards, tmp_path):
    """promtool parses each query as a recording rule: a syntax error names the panel's rule."""
    rules = []
    for board in boards:
        for panel in _panels(board):
            for target in panel["targets"]:
                rules.append({"record": f"check:{board['uid'].replace('-', '_')}:p{panel['id']}{target['refId']}",
                              "expr": concrete(target["expr"])})
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_dashboard_has_a_per_link_nvlink_heatmap(boards):
    node = next(b for b in boards if b["uid"] == "blackwell-node-gpus")
    heatmaps = [p for p in node["panels"] if p["type"] == "heatmap"]
    assert heatmaps and "link" in heatmaps[0]["targets"][0]["expr"]
