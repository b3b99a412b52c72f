"""Fault drills: a fault on the simulated box reaches a receiver as the right alert, and clears.

Each drill runs the whole chain on loopback: simulated exporter -> Prometheus scrape -> rule
evaluation (the mixin's rules, time-scaled) -> Alertmanager -> the test's webhook receiver.
The scenario table in exporter/sources/simulated/scenarios.py says which alert each fault
must raise; these tests hold the rules, the exporter and the routing to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from drill_harness import (
    FIRE_TIMEOUT_SECONDS,
    PROCESS_DRILLS,
    RESOLVE_TIMEOUT_SECONDS,
    TRITON_EXPORTER,
    Notification,
    TritonReplay,
)

from exporter.mixin.alerts import runbook_file
from exporter.mixin.config import MixinConfig
from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS, Scenario
from exporter.stack import TICK_SECONDS, Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SEVERITIES = {"critical", "warning", "info"}
BASELINE_SECONDS = 30.0


def fault_location(scenario: Scenario, profile: str) -> dict[str, set[str]]:
    """Label values that point at what the scenario broke: the GPU, its links, the layer, the model.

    Mirrors where exporter/sources/simulated/model.py injects each fault (XIDs on GPU 0,
    ECC and row remapping on GPU 1, the others on the GPU the scenario names).
    """
    where: dict[str, set[str]] = {"model": {PROFILES[profile].model}}
    gpus = {scenario.nvlink_error_gpu, scenario.thermal_throttle_gpu, scenario.power_cap_gpu,
            *scenario.util_override, *scenario.lost_gpus}
    if scenario.xid is not None:
        gpus.add(0)
    if scenario.ecc_uncorrectable or scenario.row_remap_failure:
        gpus.add(1)
    located = {g for g in gpus if g is not None}
    if located:
        where["gpu"] = {str(min(g, PROFILES[profile].gpu_count - 1)) for g in located}
    if scenario.nvlink_errors_per_second:
        where["link"] = {str(link) for link in range(scenario.nvlink_error_links)}
    if scenario.te_promotion_layer is not None:
        where["layer"] = {str(scenario.te_promotion_layer)}
    if scenario.xid is not None:
        where["xid"] = {str(scenario.xid)}
    return where


def _firing_now(stack: Stack) -> list[dict[str, str]]:
    """Every alert Prometheus holds as firing this instant (pending ones have not paged anyone).

    Except the exporter's source alerts: at the drill time scale their ``for:`` (3 s) is shorter
    than one poll interval plus its backoff, so a single poll that misses its deadline (a busy
    2-core CI machine stalls a process now and then) pages; in production the same rule waits 5
    minutes. They are drilled on their own (test_triton_gone_...) and timed by the promtool tests.
    """
    return [series["metric"] for series in
            stack.query('ALERTS{alertstate="firing", alertname!~"BlackwellExporterSource.*"}')]


def _rule_for(page: Notification, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule behind a page: the one whose static labels the page carries (burn-rate windows differ)."""
    matching = [r for r in rules if r["labels"].items() <= page.labels.items()]
    assert len(matching) == 1, f"{len(matching)} rules match {page.labels}"
    return matching[0]


def test_healthy_box_raises_nothing(stack: Stack, webhook: Any, alert_rules: dict[str, Any]) -> None:
    """A saturated but healthy box pages nobody over a window longer than any drill's time to fire."""
    assert alert_rules, "no alert rules were loaded"
    start = len(webhook.notifications)
    seen: dict[str, dict[str, str]] = {}
    end = time.monotonic() + BASELINE_SECONDS
    while time.monotonic() < end:
        for labels in _firing_now(stack):
            seen.setdefault(f"{labels['alertname']}{{{labels.get('instance')}}}", labels)
        time.sleep(TICK_SECONDS)
    assert not seen, f"alerts firing on healthy boxes: {sorted(seen)}"
    paged = [n for n in webhook.notifications[start:] if not n.alertname.startswith("BlackwellExporterSource")]
    assert not paged, f"the receiver was paged on healthy boxes: {paged}"


def test_every_alert_has_a_drill(alert_rules: dict[str, Any]) -> None:
    """The scenario table and the rules name the same alerts: every alert has a drill."""
    drilled = {alert for scenario in SCENARIOS.values() for alert in scenario.alerts} | set(PROCESS_DRILLS)
    assert sorted(drilled - set(alert_rules)) == [], "scenarios name alerts the mixin does not define"
    assert sorted(set(alert_rules) - drilled) == [], "alerts no drill covers"


def test_alert_fires_on_its_fault_and_resolves(drill: tuple[str, str], drills: Any,
                                               alert_rules: dict[str, Any]) -> None:
    alert, scenario_name = drill
    result = drills.result(scenario_name)
    assert not result.error, f"the drill could not run: {result.error}"
    assert alert in result.firing, (
        f"{alert} did not reach the receiver while {scenario_name} ran on {result.profile}; "
        f"what did: {sorted(result.firing) or 'nothing'}")
    page = result.firing[alert][0]

    assert page.labels["instance"] == result.instance, "the page names another box than the faulty one"
    assert page.labels.get("severity") in SEVERITIES
    assert page.labels["severity"] == _rule_for(page, alert_rules[alert])["labels"]["severity"]
    where = fault_location(SCENARIOS[scenario_name], result.profile)
    for label in REQUIRED_LOCATION.get(alert, ()):
        assert label in page.labels, f"{alert} does not say which {label} is at fault: {page.labels}"
    for label, values in where.items():
        if label in page.labels:
            assert page.labels[label] in values, f"{alert} points at {label}={page.labels[label]}, not {values}"
    _assert_runbook(page)

    assert alert in result.resolved and not [k for k in result.still_firing if ("alertname", alert) in k], (
        f"{alert} still firing {RESOLVE_TIMEOUT_SECONDS:g}s after {scenario_name} was switched back to healthy")


def test_exporter_down_pages_and_clears_when_it_is_back(stack: Stack, webhook: Any, drills: Any) -> None:
    """Stopping the exporter process (the one failure no scenario can play) pages; restarting it clears.

    Runs after every drill: the restarted exporter's counters start from zero again.
    """
    drills.wait_all()
    profile = "hgx-b200"
    instance = stack.instance(profile)
    start = len(webhook.notifications)

    def mine(status: str) -> Callable[[list[Notification]], list[Notification]]:
        return lambda ns: [n for n in ns[start:] if n.alertname == "BlackwellExporterDown" and n.status == status
                           and n.labels.get("instance") == instance]

    stack.exporters[profile].stop()
    try:
        pages = mine("firing")(webhook.wait_until(lambda ns: bool(mine("firing")(ns)), FIRE_TIMEOUT_SECONDS))
    finally:
        stack.restart_exporter(profile)
    assert pages, "no BlackwellExporterDown page while the exporter was stopped"
    assert pages[0].labels["severity"] == "critical"
    assert pages[0].labels["job"] == MixinConfig().job
    _assert_runbook(pages[0])
    assert webhook.wait_until(lambda ns: bool(mine("resolved")(ns)), RESOLVE_TIMEOUT_SECONDS) and \
        mine("resolved")(webhook.notifications), "BlackwellExporterDown did not resolve after the restart"


def test_triton_gone_pages_serving_and_source_down_and_clears_when_back(
        stack: Stack, webhook: Any, triton_replay: TritonReplay, alert_rules: dict[str, Any]) -> None:
    """Triton's metrics endpoint going away (Triton died) is three pages from the exporter reading it:
    the runtime is down, the exporter's source fails, and its data goes stale. Triton back clears all three.
    """
    instance = stack.instance(TRITON_EXPORTER)
    expected = {"BlackwellServingDown", "BlackwellExporterSourceDown", "BlackwellExporterSourceStale"}
    start = len(webhook.notifications)

    def mine(ns: list[Notification], status: str) -> list[Notification]:
        return [n for n in ns[start:] if n.labels.get("instance") == instance and n.status == status]

    triton_replay.stop()
    try:
        seen = webhook.wait_until(lambda ns: expected <= {n.alertname for n in mine(ns, "firing")},
                                  FIRE_TIMEOUT_SECONDS)
    finally:
        triton_replay.start()
    pages = {n.alertname: n for n in mine(seen, "firing")}
    assert expected <= set(pages), f"paged only {sorted(pages)} while Triton was gone"
    for alert in expected:
        page = pages[alert]
        assert page.labels["severity"] == _rule_for(page, alert_rules[alert])["labels"]["severity"]
        _assert_runbook(page)
    assert pages["BlackwellServingDown"].labels["endpoint"] == triton_replay.url
    assert pages["BlackwellServingDown"].labels["runtime"] == "triton"
    assert pages["BlackwellExporterSourceDown"].labels["source"] == "triton"
    assert pages["BlackwellExporterSourceStale"].labels["source"] == "triton"

    fired = {n.key for n in mine(seen, "firing")}
    after = webhook.wait_until(lambda ns: fired <= {n.key for n in mine(ns, "resolved")}, RESOLVE_TIMEOUT_SECONDS)
    assert fired <= {n.key for n in mine(after, "resolved")}, "not every page cleared after Triton came back"


def _assert_runbook(page: Notification) -> None:
    """The page links the runbook by the mixin's URL scheme, and that runbook is in the repository."""
    alert = page.alertname
    runbook_url = page.annotations.get("runbook_url", "")
    assert runbook_url == f"{MixinConfig().runbook_base_url}/{alert}.md"
    runbook = REPO / runbook_file(alert)
    assert runbook.is_file(), f"{runbook_url} points at {runbook_file(alert)}, which is not in the repository"
    headings = [line for line in runbook.read_text().splitlines() if line.startswith("# ")]
    assert headings[:1] == [f"# {alert}"], f"{runbook_file(alert)} is not the runbook of {alert}"
    assert page.annotations.get("summary"), f"{alert} reached the receiver without a summary"


# Alerts whose page must name the faulty component (values checked against fault_location()).
REQUIRED_LOCATION: dict[str, tuple[str, ...]] = {
    "BlackwellGPULost": ("gpu", "uuid"),
    "BlackwellXIDCritical": ("gpu", "xid"),
    "BlackwellECCUncorrectable": ("gpu",),
    "BlackwellRowRemapFailure": ("gpu",),
    "BlackwellThermalThrottling": ("gpu",),
    "BlackwellPowerThrottling": ("gpu",),
    "BlackwellNVLinkErrors": ("gpu", "link"),
    "BlackwellGPUStraggler": ("gpu",),
    "BlackwellGraceC2CReadShareHigh": ("gpu",),
    "BlackwellTTFTSLOViolation": ("model",),
    "BlackwellTTFTBudgetBurn": ("model",),
    "BlackwellAvailabilityBudgetBurn": ("model",),
    "BlackwellTTFTLongPromptSpikes": ("model",),
    "BlackwellColdStartTTFT": ("model",),
    "BlackwellKVCacheNearFull": ("model",),
    "BlackwellTEPromotionLayerSpike": ("layer",),
}
