"""deploy/fleet: the per-rack Prometheus, its remote_write filter, the federation alternative and the
global rules form one consistent configuration that Prometheus itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "deploy" / "fleet"
RACK_CONFIG = FLEET / "rack-prometheus.yml"
FEDERATION_CONFIG = FLEET / "federation-global-prometheus.yml"
GLOBAL_RULES = FLEET / "global-rules.yaml"
# Raw per-GPU series that must stay in the rack: the volume the fleet tier exists to avoid.
RACK_ONLY = ["blackwell_nvlink5_errors_total", "blackwell_gpu_utilization_ratio", "blackwell_gpu_power_watts",
             "blackwell_nvlink_throughput_bytes_total", "blackwell_gpu_fabric_info",
             "instance_gpu_link:blackwell_nvlink_errors:increase5m"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing (Debian package prometheus; ./dev test installs it)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def recorded_names() -> list[str]:
    groups = yaml.safe_load((REPO / "alerts" / "recording-rules.yaml").read_text())["groups"]
    return sorted({rule["record"] for group in groups for rule in group["rules"]})


def global_rule_inputs() -> set[str]:
    """Every metric name a global rule's expression selects (each is written ``name{...}``)."""
    groups = yaml.safe_load(GLOBAL_RULES.read_text())["groups"]
    return {name for group in groups for rule in group["rules"]
            for name in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", rule["expr"])}


def forwarded_by_remote_write(name: str) -> bool:
    """Applies the rack config's write_relabel_configs (keep/drop on __name__, anchored) to one series name."""
    for relabel in yaml.safe_load(RACK_CONFIG.read_text())["remote_write"][0]["write_relabel_configs"]:
        assert relabel["source_labels"] == ["__name__"]
        matched = re.fullmatch(relabel["regex"], name) is not None
        if (relabel["action"] == "keep") != matched:
            return False
    return True


def forwarded_by_federation(name: str) -> bool:
    """True when any of the federation job's match[] selectors (all on __name__) selects ``name``."""
    selectors = yaml.safe_load(FEDERATION_CONFIG.read_text())["scrape_configs"][0]["params"]["match[]"]
    tests = {"=": lambda pattern: name == pattern, "=~": lambda pattern: re.fullmatch(pattern, name) is not None,
             "!~": lambda pattern: re.fullmatch(pattern, name) is None}
    return any(all(tests[operator](pattern) for operator, pattern in re.findall(r'__name__(=~|!~|=)"([^"]*)"', selector))
               for selector in selectors)


def test_the_rack_prometheus_config_passes_promtool_with_the_mixins_generated_rules_loaded(tmp_path: Path) -> None:
    config = yaml.safe_load(RACK_CONFIG.read_text())
    config["rule_files"] = [str(REPO / "alerts" / "*.yaml")]
    checked = tmp_path / "rack-prometheus.yml"
    checked.write_text(yaml.safe_dump(config, sort_keys=False))
    result = promtool("check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list((REPO / 'alerts').glob('*.yaml')))} rule files found" in result.stdout


def test_the_shipped_rack_prometheus_config_passes_promtool_as_written() -> None:
    result = promtool("check", "config", str(RACK_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_federating_global_prometheus_config_passes_promtool_with_its_global_rules() -> None:
    result = promtool("check", "config", str(FEDERATION_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_the_global_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(GLOBAL_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_series_a_global_rule_reads_is_forwarded_both_ways() -> None:
    inputs = global_rule_inputs()
    assert "domain:blackwell_gpu_power_watts:sum" in inputs and "ALERTS" in inputs
    assert [name for name in inputs if not forwarded_by_remote_write(name)] == []
    assert [name for name in inputs if not forwarded_by_federation(name)] == []


def test_the_global_rules_read_recording_rules_the_mixin_really_generates() -> None:
    recorded = set(recorded_names())
    assert [name for name in global_rule_inputs() if ":" in name and name not in recorded] == []


def test_recording_rule_outputs_go_to_the_fleet_tier_and_raw_per_gpu_series_stay_in_the_rack() -> None:
    names = [*recorded_names(), "ALERTS", "up", "blackwell_gpu_up", *RACK_ONLY]
    expected = {name: name not in RACK_ONLY for name in names}
    assert {name: forwarded_by_remote_write(name) for name in names} == expected
    assert {name: forwarded_by_federation(name) for name in names} == expected
