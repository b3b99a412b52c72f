"""SIGHUP reloads the whole configuration of the real daemon (a subprocess), or keeps the old one."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, http_get, running_exporter, wait_until

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}


def samples(base: str, headers: dict[str, str] | None = None) -> dict[str, list] | None:
    status, body, _ = http_get(base + "/metrics", headers=headers)
    if status != 200:
        return None
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(metrics: dict[str, list] | None, name: str, **labels: str) -> float | None:
    for sample in (metrics or {}).get(name, []):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def simulated(interval: float, timeout: float, scenario: str, web: Path | None = None) -> str:
    text = (f"sources:\n  simulated:\n    enabled: true\n    profile: hgx-b200\n    scenario: {scenario}\n"
            f"    interval: {interval}\n    timeout: {timeout}\n")
    return text + (f"web_config_file: {web}\n" if web is not None else "")


def test_sighup_applies_sources_scenario_and_web_config_and_keeps_the_old_one_when_invalid(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(simulated(1, 1, "healthy"))
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: {bcrypt.hashpw(b's3cret', bcrypt.gensalt(4)).decode()}\n")
    with running_exporter("--config", str(config)) as (base, proc):
        first = wait_until(lambda: samples(base), what="a scrape")
        assert value(first, "blackwell_exporter_config_last_reload_successful") == 1
        started = value(first, "blackwell_exporter_config_last_reload_success_timestamp_seconds")

        config.write_text(simulated(2, 1, "gpu-lost", web))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: http_get(base + "/metrics")[0] == 401, what="the reloaded web config asking for auth")
        after = wait_until(lambda: samples(base, ALICE), what="an authorized scrape")
        assert value(after, "blackwell_exporter_simulation_scenario", scenario="gpu-lost") == 1
        assert value(after, "blackwell_exporter_source_interval_seconds", source="simulated") == 2
        assert value(after, "blackwell_exporter_config_last_reload_successful") == 1
        assert value(after, "blackwell_exporter_config_last_reload_success_timestamp_seconds") > started

        config.write_text(simulated(1, 5, "healthy"))  # timeout over interval: refused
        proc.send_signal(signal.SIGHUP)
        refused = wait_until(
            lambda: value(samples(base, ALICE), "blackwell_exporter_config_last_reload_successful") == 0 and
            samples(base, ALICE), what="the failed reload in the metrics")
        assert value(refused, "blackwell_exporter_simulation_scenario", scenario="gpu-lost") == 1
        assert value(refused, "blackwell_exporter_source_interval_seconds", source="simulated") == 2
        assert http_get(base + "/metrics")[0] == 401
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=10)[0]
    assert "reload: configuration applied" in log
    assert ("reload: configuration not applied, still running on the previous one: sources.simulated: "
            "Value error, timeout (5.0s) must not exceed interval (1.0s)") in log


def test_issue_15_item_18_reproduction_runs_and_checks_alike(tmp_path):
    """A file's interval plus the environment's timeout: `config check` and `run` agree it is valid."""
    config = tmp_path / "config.yaml"
    config.write_text(simulated(60, 2, "healthy"))
    env_var = {"BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": "20"}
    check = subprocess.run([sys.executable, "-m", "exporter", "config", "check", str(config)], cwd=REPO,
                           env={**os.environ, **env_var}, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    with running_exporter("--config", str(config), env=env_var) as (base, _):
        metrics = wait_until(lambda: samples(base), what="a scrape")
        assert value(metrics, "blackwell_exporter_source_interval_seconds", source="simulated") == 60
