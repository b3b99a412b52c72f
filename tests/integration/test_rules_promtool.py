"""The generated rules through Debian's promtool, and the Alertmanager example through amtool.

``tests/rules/*.test.yaml`` hold promtool unit tests with, for every alerting rule, a case where
it fires (exact labels and annotations) and a case where it stays silent; a test here checks
that coverage, so a new rule without both cases fails the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from exporter.mixin.config import MixinConfig
from exporter.mixin.generate import rule_file
from exporter.mixin.rules import group_dict, groups, rule_groups

REPO = Path(__file__).resolve().parents[2]
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.test.yaml"))
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")

pytestmark = pytest.mark.integration
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (apt-get install prometheus-alertmanager)")


def _run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)


@needs_promtool
def test_promtool_check_rules_is_clean():
    result = _run(PROMTOOL, "check", "rules", "alerts/recording-rules.yaml", "alerts/alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "WARNING" not in (result.stdout + result.stderr).upper()


@needs_promtool
def test_drill_scaled_rules_are_valid_too(tmp_path):
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(MixinConfig(), time_scale=1 / 60)}, sort_keys=False))
    result = _run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    # One promtool per file, as many at a time as there are CPUs: promtool 2.42 runs files one after another.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(zip(RULE_TESTS, pool.map(lambda path: _run(PROMTOOL, "test", "rules", str(path)), RULE_TESTS),
                           strict=True))
    for path, result in results.items():
        assert result.returncode == 0, f"{path.name}: " + result.stdout[-4000:] + result.stderr[-2000:]
        assert "SUCCESS" in result.stdout, path.name


@needs_promtool
def test_promtool_unit_tests_catch_a_changed_threshold(tmp_path):
    """Rules generated with another KV threshold make the committed KV cases fail."""
    config = MixinConfig(kv_cache_occupancy_max=0.98)
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    for name, file_groups in groups(config).items():
        (alerts / f"{name}.yaml").write_text(rule_file([group_dict(g, config) for g in file_groups]))
    tests = tmp_path / "tests" / "rules"
    tests.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "rules" / "serving.test.yaml", tests)
    result = _run(PROMTOOL, "test", "rules", str(tests / "serving.test.yaml"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "97% of KV-cache blocks are in use (threshold 92%)" in output, "expected case shown"
    assert "BlackwellKVCacheNearFull" in output and "got:[]" in output.replace(" ", ""), output[-2000:]


def _variants() -> dict[tuple[str, frozenset], dict]:
    """Every alerting rule, keyed by name and its static labels (burn-rate rules share a name)."""
    out = {}
    for group in rule_groups(MixinConfig()):
        for rule in group["rules"]:
            if "alert" in rule:
                out[(rule["alert"], frozenset(rule["labels"].items()))] = rule
    return out


def test_every_alerting_rule_has_a_firing_and_a_silent_case():
    fired: set[tuple[str, frozenset]] = set()
    silent: set[tuple[str, frozenset]] = set()
    variants = _variants()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                expected = [dict(a.get("exp_labels", {})) for a in check.get("exp_alerts") or []]
                for key in variants:
                    if key[0] != name:
                        continue
                    static = dict(key[1])
                    matching = [e for e in expected if all(str(e.get(k)) == v for k, v in static.items())]
                    if matching:
                        assert all("exp_annotations" in a for a in check["exp_alerts"]), f"{path.name}: {name}"
                        fired.add(key)
                    else:
                        silent.add(key)
    missing_fire = sorted(f"{n} {dict(labels)}" for n, labels in set(variants) - fired)
    missing_silent = sorted(f"{n} {dict(labels)}" for n, labels in set(variants) - silent)
    assert not missing_fire, f"no firing case for: {missing_fire}"
    assert not missing_silent, f"no silent case for: {missing_silent}"


@needs_amtool
def test_alertmanager_example_is_valid():
    result = _run(AMTOOL, "check-config", "deploy/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=critical", "alertname=BlackwellGPULost"], "pager"),
    (["severity=critical", "alertname=BlackwellTTFTBudgetBurn", "long=1h", "short=5m"], "pager"),
    (["severity=warning", "alertname=BlackwellKVCacheNearFull"], "ticket"),
    (["severity=warning", "alertname=BlackwellTTFTBudgetBurn", "long=3d", "short=6h"], "ticket"),
])
def test_alertmanager_routes_critical_to_pager_and_warning_to_ticket(labels, receiver):
    result = _run(AMTOOL, "config", "routes", "test", "--config.file=deploy/alertmanager.yml",
                  f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
def test_every_shipped_severity_has_a_route():
    severities = {rule["labels"]["severity"] for rule in _variants().values()}
    for severity in severities:
        result = _run(AMTOOL, "config", "routes", "test", "--config.file=deploy/alertmanager.yml",
                      f"severity={severity}")
        assert result.returncode == 0 and result.stdout.strip() in ("pager", "ticket"), (severity, result.stdout)


@needs_promtool
def test_prometheus_example_loads_the_generated_rules(tmp_path):
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["job_name"] == MixinConfig().job
    # The example mounts alerts/ at /etc/prometheus/rules; point it at the checkout instead.
    config["rule_files"] = [str(REPO / "alerts" / "*.yaml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = _run(PROMTOOL, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for name, file_groups in groups(MixinConfig()).items():
        count = sum(len(g.rules) for g in file_groups)
        assert f"alerts/{name}.yaml" in result.stdout and f"SUCCESS: {count} rules found" in result.stdout
