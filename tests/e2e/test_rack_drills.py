"""Rack drills: an NVL72 rack of 18 simulated tray exporters against one real Prometheus and Alertmanager.

The rules are the mixin's, at the drills' time scale (DRILL_TIME_SCALE). A fault in one tray must page
through the NVLink-domain alert that names that tray and GPU, while the per-instance alert on the same
signal, which compares a GPU with its own tray's GPUs only, stays quiet. One tray of a neighbouring rack
runs healthy beside them: a second NVLink domain that no rack alert may name or mix in.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
from drill_harness import Notification, WebhookReceiver
from rack_harness import start_rack, tray_name

from exporter.sources.simulated.profiles import NVL72_TRAYS
from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.stack import DRILL_TIME_SCALE, Stack, find_binary, write_rules

pytestmark = pytest.mark.e2e

STRAGGLER = SCENARIOS["rack-straggler-gpu"]
POWER = SCENARIOS["rack-power-near-budget"]
NEIGHBOUR = "rack-1"
FIRE_TIMEOUT_SECONDS = 90.0
RESOLVE_TIMEOUT_SECONDS = 90.0
# Alerts of one instance (a tray), as opposed to the domain's; the exporter's own source alerts flap on a
# loaded machine at the drill scale (docs/drills.md) and say nothing about the fault.
PER_INSTANCE = 'ALERTS{alertname!~"BlackwellDomain.*|BlackwellExporterSource.*"}'


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, name="rack-webhook", daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Stack]:
    for binary in (("prometheus",), ("alertmanager", "prometheus-alertmanager")):
        find_binary(*binary)
    directory = tmp_path_factory.mktemp("rack")
    rules = write_rules(directory / "drill-rules.yaml", DRILL_TIME_SCALE)
    with start_rack(directory, [rules], webhook.url, STRAGGLER.name, neighbour_rack=NEIGHBOUR) as running:
        yield running


def test_the_domain_straggler_pages_naming_the_tray_and_gpu_and_the_per_instance_straggler_stays_quiet(
        rack: Stack, webhook: WebhookReceiver) -> None:
    started = time.monotonic()
    faulty = rack.instance(tray_name(STRAGGLER.fault_tray))
    per_instance_held: list[dict] = []

    def paged(notifications: list[Notification]) -> bool:
        # Prometheus is asked each time a notification arrives: pending counts too, not only what was sent.
        per_instance_held.extend(rack.query('ALERTS{alertname="BlackwellGPUStraggler"}'))
        return any(n.alertname == "BlackwellDomainGPUStraggler" and n.status == "firing" for n in notifications)

    notifications = webhook.wait_until(paged, FIRE_TIMEOUT_SECONDS)
    fired = [n for n in notifications if n.alertname == "BlackwellDomainGPUStraggler" and n.status == "firing"]
    assert fired, f"no domain straggler page in {FIRE_TIMEOUT_SECONDS:g}s; got {[n.alertname for n in notifications]}"
    seconds_to_fire = time.monotonic() - started
    assert {(n.labels["instance"], n.labels["gpu"]) for n in fired} == {(faulty, "2")}
    page = fired[0]
    assert page.labels["cluster_uuid"] and page.labels["clique_id"]
    assert f"tray {faulty}" in page.annotations["description"]
    assert page.annotations["runbook_url"].endswith("/runbooks/BlackwellDomainGPUStraggler.md")
    # The per-instance straggler had as long as the domain one took, and as long again after it fired.
    time.sleep(min(seconds_to_fire, 15.0))
    per_instance_held.extend(rack.query('ALERTS{alertname="BlackwellGPUStraggler"}'))
    assert not per_instance_held
    assert not [n for n in webhook.notifications if n.alertname == "BlackwellGPUStraggler"]
    # Every tray was in the one domain the whole time; the neighbour's tray is a domain of its own.
    domains = rack.query("count by (cluster_uuid, clique_id) (domain_instance_gpu:blackwell_gpu_fabric_info:member)")
    assert sorted(d["value"][1] for d in domains) == ["4", "72"]


def _switch_rack(rack: Stack, scenario: str) -> None:
    """Every tray of the drilled rack takes the scenario; a one-tray fault breaks only its fault tray (the
    others run healthy under it). The neighbour rack's tray stays healthy."""
    for index in range(NVL72_TRAYS):
        rack.set_scenario(tray_name(index), scenario)


@pytest.mark.parametrize("scenario, alertname", [("rack-tray-links-degrading", "BlackwellDomainTrayLinksBehind"),
                                                 ("rack-tray-lost", "BlackwellDomainFabricDegraded")])
def test_a_faulty_tray_pages_through_the_domain_alert_naming_that_tray(
        rack: Stack, webhook: WebhookReceiver, scenario: str, alertname: str) -> None:
    faulty = rack.instance(tray_name(SCENARIOS[scenario].fault_tray))
    start = len(webhook.notifications)
    _switch_rack(rack, scenario)

    def fired(notifications: list[Notification]) -> list[Notification]:
        return [n for n in notifications[start:] if n.alertname == alertname and n.status == "firing"]

    notifications = webhook.wait_until(lambda ns: bool(fired(ns)), FIRE_TIMEOUT_SECONDS)
    assert fired(notifications), f"no {alertname} in {FIRE_TIMEOUT_SECONDS:g}s after switching to {scenario}"
    assert {n.labels["instance"] for n in fired(notifications)} == {faulty}


def _domain_of(rack: Stack, name: str) -> tuple[str, str]:
    """The fabric cluster UUID and clique id the tray ``name`` reports, as Prometheus scraped them."""
    reported = rack.query(f'group by (cluster_uuid, clique_id) (blackwell_gpu_fabric_info{{instance="{rack.instance(name)}"}})')
    assert len(reported) == 1, reported
    return reported[0]["metric"]["cluster_uuid"], reported[0]["metric"]["clique_id"]


def _per_instance_alerts(rack: Stack) -> set[tuple[str, str]]:
    return {(a["metric"]["alertname"], a["metric"].get("instance", "")) for a in rack.query(PER_INSTANCE)}


def test_a_rack_near_its_gpu_power_budget_warns_naming_its_domain_and_no_tray_alert_comes_with_it(
        rack: Stack, webhook: WebhookReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    drilled, neighbour = _domain_of(rack, tray_name(0)), _domain_of(rack, tray_name(0, NEIGHBOUR))
    assert drilled != neighbour
    start = len(webhook.notifications)
    # Through the earlier drills the rack drew what a saturated healthy rack draws: under the ratio.
    assert not [n for n in webhook.notifications[:start] if n.alertname == "BlackwellDomainPowerNearBudget"]
    # What earlier drills left pending or firing (a lost tray's GPUs, a tray's NVLink errors) is theirs.
    inherited = _per_instance_alerts(rack)
    switched = time.monotonic()
    _switch_rack(rack, POWER.name)

    def pages(status: str) -> list[Notification]:
        return [n for n in webhook.notifications[start:]
                if n.alertname == "BlackwellDomainPowerNearBudget" and n.status == status]

    seen = set()
    while not pages("firing") and time.monotonic() - switched < FIRE_TIMEOUT_SECONDS:
        seen |= _per_instance_alerts(rack)
        time.sleep(0.5)
    fired = pages("firing")
    assert fired, f"no BlackwellDomainPowerNearBudget in {FIRE_TIMEOUT_SECONDS:g}s after switching to {POWER.name}"
    seconds_to_fire = time.monotonic() - switched
    assert {(n.labels["cluster_uuid"], n.labels["clique_id"]) for n in fired} == {drilled}
    assert "instance" not in fired[0].labels and fired[0].labels["severity"] == "warning"
    drawn = re.search(rf"NVLink domain {drilled[0]}/{drilled[1]} draw ([\d.]+)% of the rack's 86400 W",
                      fired[0].annotations["description"])
    assert drawn and 98 < float(drawn.group(1)) < 100, fired[0].annotations["description"]
    assert fired[0].annotations["runbook_url"].endswith("/runbooks/BlackwellDomainPowerNearBudget.md")
    # No per-instance alert came with it, while it came and for as long again after it fired.
    settled = time.monotonic()
    while time.monotonic() - settled < min(seconds_to_fire, 15.0):
        seen |= _per_instance_alerts(rack)
        time.sleep(0.5)
    assert not seen - inherited, f"per-instance alerts under {POWER.name}: {sorted(seen - inherited)}"
    assert not [(name, instance) for name, instance in seen if name == "BlackwellPowerThrottling"]
    # Back to healthy load, the warning clears.
    back = time.monotonic()
    _switch_rack(rack, "healthy")
    webhook.wait_until(lambda _: bool(pages("resolved")), RESOLVE_TIMEOUT_SECONDS)
    assert pages("resolved"), f"BlackwellDomainPowerNearBudget still firing {RESOLVE_TIMEOUT_SECONDS:g}s after healthy"
    with capsys.disabled():
        print(f"\nrack drill {POWER.name}: BlackwellDomainPowerNearBudget fired {seconds_to_fire:.0f}s after the "
              f"switch, resolved {time.monotonic() - back:.0f}s after the switch back")
