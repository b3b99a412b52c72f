"""Rack drills: an NVL72 rack of 18 simulated tray exporters against one real Prometheus and Alertmanager.

The rules are the mixin's, at the drills' time scale (DRILL_TIME_SCALE). A fault in one tray must page
through the NVLink-domain alert that names that tray and GPU, while the per-instance alert on the same
signal, which compares a GPU with its own tray's GPUs only, stays quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from drill_harness import Notification, WebhookReceiver
from rack_harness import start_rack, tray_name

from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.stack import DRILL_TIME_SCALE, Stack, find_binary, write_rules

pytestmark = pytest.mark.e2e

STRAGGLER = SCENARIOS["rack-straggler-gpu"]
FIRE_TIMEOUT_SECONDS = 90.0


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
    with start_rack(directory, [rules], webhook.url, STRAGGLER.name) as running:
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
    # Every tray was in the one domain the whole time.
    domains = rack.query("count by (cluster_uuid, clique_id) (domain_instance_gpu:blackwell_gpu_fabric_info:member)")
    assert [d["value"][1] for d in domains] == ["72"]


def _switch_rack(rack: Stack, scenario: str) -> None:
    """Every tray takes the scenario; only its fault tray breaks (the others run healthy under it)."""
    for name in rack.exporters:
        rack.set_scenario(name, scenario)


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
