"""`blackwell-exporter preflight` end to end on a simulated box, and the daemon source's metrics."""

from __future__ import annotations

import json

import pytest

from exporter import cli
from exporter.preflight import boxes
from exporter.preflight.result import CheckResult, Status
from exporter.preflight.settings import PreflightConfig
from exporter.preflight.source import PreflightSource, families
from exporter.snapshot import Snapshot
from exporter.sources.registry import SOURCES
from exporter.sources.simulated.source import SimulatedConfig

ALL_CHECKS = ["gpus_visible", "driver_cuda_version", "compute_capability", "nvlink_topology", "nvlink_links_active",
              "nvlink_errors", "ecc_mode", "row_remaps", "persistence_mode", "engine_quantization",
              "engine_trtllm_version", "serving_nccl_p2p_level", "serving_cuda_visible_devices", "serving_health",
              "serving_warmup", "prometheus_scrapes_exporter", "prometheus_scrapes_serving",
              "prometheus_rules_loaded"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("BLACKWELL_EXPORTER_"):
            monkeypatch.delenv(name)


def run_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], profile: str,
             scenario: str = "healthy") -> tuple[int, dict]:
    monkeypatch.setenv("BLACKWELL_EXPORTER_SIMULATE", profile)
    monkeypatch.setenv("BLACKWELL_EXPORTER_SCENARIO", scenario)
    code = cli.main(["preflight", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_healthy_simulated_h200_box_exits_zero_with_every_check_listed(monkeypatch, capsys) -> None:
    code, report = run_json(monkeypatch, capsys, "h200x2")
    assert code == 0
    assert report["origin"] == "simulation h200x2, scenario healthy"
    assert [c["check"] for c in report["checks"]] == ALL_CHECKS
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name["compute_capability"]["status"] == "warn"
    assert by_name["serving_health"]["status"] == "pass"
    assert by_name["serving_warmup"]["status"] == "pass"  # ten simulated minutes of traffic
    assert report["summary"]["fail"] == 0


@pytest.mark.parametrize("scenario, check", [("serving-not-ready", "serving_health"),
                                             ("nvlink-crc-burst", "nvlink_errors")])
def test_a_failing_check_makes_the_exit_code_non_zero(monkeypatch, capsys, scenario: str, check: str) -> None:
    code, report = run_json(monkeypatch, capsys, "hgx-b200", scenario)
    assert code == 1
    assert [c["check"] for c in report["checks"] if c["status"] == "fail"] == [check]


def test_the_table_names_each_check_with_status_evidence_and_fix(monkeypatch, capsys) -> None:
    monkeypatch.setenv("BLACKWELL_EXPORTER_SIMULATE", "h200x2")
    assert cli.main(["preflight"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preflight: simulation h200x2, scenario healthy\nCHECK")
    row = next(line for line in out.splitlines() if line.startswith("compute_capability"))
    assert row.split()[1] == "WARN" and "GPU 0 NVIDIA H200 9.0" in row
    assert "fix: Hopper (9.x) runs FP8 but has no FP4 tensor cores" in out
    assert out.rstrip().endswith("0 fail, 9 skip")


def test_config_errors_exit_two(tmp_path, capsys) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("sources:\n  preflight:\n    expected_link_count: 0\n")
    assert cli.main(["preflight", "--config", str(bad)]) == 2
    assert "sources.preflight.expected_link_count" in capsys.readouterr().err


def test_preflight_is_a_registered_source_with_a_five_minute_default_interval() -> None:
    assert SOURCES["preflight"] is PreflightSource
    assert PreflightConfig().interval == 300.0


def test_the_source_exports_one_series_per_check_and_a_one_hot_status() -> None:
    reader = boxes.fresh_simulation(SimulatedConfig(enabled=True, profile="hgx-b200", scenario="gpu-lost"))
    source = PreflightSource(PreflightConfig(enabled=True), read_box=reader)
    rendered = Snapshot.of("preflight", source.poll()).rendered
    check_lines = rendered["blackwell_preflight_check"].splitlines()
    assert 'blackwell_preflight_check{check="gpus_visible"} 0' in check_lines
    assert 'blackwell_preflight_check{check="compute_capability"} 1' in check_lines
    assert not any('check="engine_quantization"' in line for line in check_lines)  # skipped: absent
    status = rendered["blackwell_preflight_check_status"]
    assert 'blackwell_preflight_check_status{check="engine_quantization",status="skip"} 1' in status
    assert len(status.splitlines()) == 4 * len(ALL_CHECKS)


def test_warn_counts_as_passing_in_the_check_gauge() -> None:
    fams = families([CheckResult("a", Status.WARN, "e", "f"), CheckResult("b", Status.FAIL, "e", "f")])
    assert fams[0].samples == [(("a",), 1), (("b",), 0)]


def test_settings_take_the_listen_port_and_an_enabled_triton_endpoint(tmp_path) -> None:
    from exporter import config as config_mod
    from exporter.preflight import effective_settings

    path = tmp_path / "c.yaml"
    path.write_text("listen: 127.0.0.1:9500\nsources:\n  triton:\n    enabled: true\n    endpoints:\n"
                    "      - url: http://10.0.0.5:8002/metrics\n  trtllm_serve:\n    enabled: true\n"
                    "    endpoints:\n      - url: http://10.0.0.6:8000/prometheus/metrics\n"
                    "  engine:\n    enabled: true\n    engines: [/models/a, /models/b]\n")
    cfg = effective_settings(config_mod.load(path, environ={}))
    assert (cfg.exporter_port, cfg.triton_url) == (9500, "http://10.0.0.5:8000")
    assert (cfg.trtllm_serve_url, str(cfg.engine_dir)) == ("http://10.0.0.6:8000", "/models/a")
    path.write_text("sources:\n  preflight:\n    exporter_port: 9999\n    triton_url: http://t:1\n")
    cfg = effective_settings(config_mod.load(path, environ={}))
    assert (cfg.exporter_port, cfg.triton_url) == (9999, "http://t:1")
