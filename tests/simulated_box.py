"""A simulated box polled as Prometheus would read it, for the simulation's tests, and the host facts
preflight reads from it."""

from __future__ import annotations

import itertools

from prometheus_client.parser import text_string_to_metric_families

from exporter.mixin.config import MixinConfig
from exporter.preflight import from_families
from exporter.preflight.facts import HostFacts
from exporter.snapshot import Snapshot, SnapshotStore
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from tests.support import FakeClock as Clock


def poll(source: SimulatedSource) -> dict[str, list]:
    store = SnapshotStore()
    store.publish("simulated", Snapshot.of("simulated", source.poll()), lambda: Snapshot("exporter", {}))
    by_sample_name: dict[str, list] = {}
    for family in text_string_to_metric_families(store.current().text.decode()):
        for sample in family.samples:
            by_sample_name.setdefault(sample.name, []).append(sample)
    return by_sample_name


def samples(metrics: dict, name: str, **labels) -> list:
    return [s for s in metrics[name] if all(s.labels.get(k) == v for k, v in labels.items())]


def make(profile: str = "hgx-b200", scenario: str = "healthy") -> tuple[SimulatedSource, Clock]:
    clock = Clock()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile=profile, scenario=scenario), clock=clock)
    source.poll()
    clock.now += 10
    return source, clock


def alerting_nvlink5_errors(metrics: dict) -> list:
    """NVLink5 error samples of the kinds the NVLink alert counts (healthy links count corrected symbol errors)."""
    ignored = set(MixinConfig().nvlink_ignored_error_kinds)
    return [s for s in metrics["blackwell_nvlink5_errors_total"] if s.labels["kind"] not in ignored]


def preflight_host(profile: str, scenario: str = "healthy") -> HostFacts:
    """The host facts preflight reads from a simulated box's second poll, one minute after the first."""
    ticks = itertools.count()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile=profile, scenario=scenario),
                             clock=lambda: 60.0 * next(ticks))
    source.poll()
    return from_families.host_facts(list(from_families.samples(source.poll())), f"simulation {profile}")
