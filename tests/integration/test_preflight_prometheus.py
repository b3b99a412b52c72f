"""Preflight's Prometheus checks against Debian's real Prometheus: it scrapes a simulated
exporter and a serving endpoint (a recorded Triton 2.51 /metrics body) and loads the generated
rules from alerts/; then the same Prometheus without them, and a dead exporter target."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporter import cli
from exporter.mixin.config import MixinConfig
from exporter.preflight.checks import prometheus
from exporter.preflight.result import Status
from exporter.preflight.settings import PreflightConfig
from exporter.stack import Service, free_port, http_get, start_exporter, start_prometheus
from tests.unit.upstream_server import Route, Upstream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = MixinConfig().job
TRITON_METRICS = ROOT / "tests" / "fixtures" / "triton" / "python_backend_metrics.txt"


def scrape_config(jobs: dict[str, list[str]], rule_files: list[Path]) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in jobs.items()],
    }


def wait_for_scrapes(prom: Service, jobs: int, timeout: float = 20.0) -> None:
    """Until every target has been scraped once (health no longer "unknown")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http_get(f"{prom.url}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        if len(targets) == jobs and all(t["health"] != "unknown" for t in targets):
            return
        time.sleep(0.2)
    raise AssertionError(f"targets not scraped in {timeout}s: {prom.log_tail()}")


@pytest.fixture(scope="module")
def triton_metrics() -> Iterator[Upstream]:
    server = Upstream()
    server.routes["/metrics"] = Route(TRITON_METRICS.read_bytes())
    yield server
    server.close()


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_exporter(tmp_path_factory.mktemp("exporter"), "h200x2")
    yield service
    service.stop()


def test_prometheus_scraping_both_and_holding_the_rules_passes(tmp_path: Path, exporter: Service,
                                                              triton_metrics: Upstream, monkeypatch) -> None:
    rule_files = sorted((ROOT / "alerts").glob("*.yaml"))
    assert rule_files, "alerts/ holds the generated rules (blackwell-exporter generate)"
    prom = start_prometheus(tmp_path / "prom", scrape_config(
        {JOB: [f"127.0.0.1:{exporter.port}"], "triton": [f"127.0.0.1:{triton_metrics.port}"]}, rule_files))
    try:
        wait_for_scrapes(prom, 2)
        cfg = PreflightConfig(prometheus_url=prom.url, exporter_port=exporter.port, rules_dir=ROOT / "alerts")
        scrapes = prometheus.prometheus_scrapes_exporter(cfg, JOB)
        assert scrapes.status is Status.PASS, scrapes.evidence
        assert scrapes.evidence == f"target(s) {JOB}/127.0.0.1:{exporter.port} up"
        other_job = prometheus.prometheus_scrapes_exporter(cfg, "gpu-exporters")
        assert other_job.status is Status.WARN and "the generated rules expect job 'gpu-exporters'" in other_job.evidence
        serving = prometheus.prometheus_scrapes_serving(cfg)
        assert serving.status is Status.PASS, serving.evidence
        assert serving.evidence.startswith(f"triton triton/127.0.0.1:{triton_metrics.port} (")
        rules = prometheus.prometheus_rules_loaded(cfg)
        expected = prometheus.expected_rules(ROOT / "alerts")
        assert (rules.status, rules.evidence) == (Status.PASS, f"all {len(expected)} rules from {ROOT / 'alerts'} loaded")

        # The command, end to end: simulated box facts, this Prometheus, exit 0.
        config = tmp_path / "preflight.yaml"
        config.write_text(yaml.safe_dump({"sources": {"preflight": {
            "prometheus_url": prom.url, "exporter_port": exporter.port, "rules_dir": str(ROOT / "alerts")}}}))
        monkeypatch.setenv("BLACKWELL_EXPORTER_SIMULATE", "h200x2")
        assert cli.main(["preflight", "--config", str(config)]) == 0
    finally:
        prom.stop()


def test_missing_rules_serving_job_and_a_dead_exporter_each_fail(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    prom = start_prometheus(tmp_path / "prom", scrape_config({JOB: [f"127.0.0.1:{dead}"]}, []))
    try:
        wait_for_scrapes(prom, 1)
        cfg = PreflightConfig(prometheus_url=prom.url, exporter_port=dead, rules_dir=ROOT / "alerts")
        scrapes = prometheus.prometheus_scrapes_exporter(cfg, JOB)
        assert scrapes.status is Status.FAIL and "connection refused" in scrapes.evidence
        assert prometheus.prometheus_scrapes_serving(cfg).status is Status.FAIL
        rules = prometheus.prometheus_rules_loaded(cfg)
        assert rules.status is Status.FAIL and rules.evidence.startswith("0 of ")
        other_port = PreflightConfig(prometheus_url=prom.url, exporter_port=dead + 1)
        assert "none of 1 active targets is this exporter" in prometheus.prometheus_scrapes_exporter(other_port, JOB).evidence
    finally:
        prom.stop()


def test_an_unreachable_prometheus_fails_with_the_reason() -> None:
    cfg = PreflightConfig(prometheus_url=f"http://127.0.0.1:{free_port()}", http_timeout=1.0)
    result = prometheus.prometheus_scrapes_exporter(cfg, JOB)
    assert result.status is Status.FAIL and "no answer from" in result.evidence
