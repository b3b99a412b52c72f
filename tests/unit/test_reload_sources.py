"""What a reload keeps: a source whose settings hold keeps running (its handles, its counters); a
changed one is rebuilt, and so is what is built from it; a disabled one stops and its series go."""

from __future__ import annotations

from exporter import config as config_mod
from exporter.daemon import build_sources
from exporter.scheduler import Scheduler
from exporter.snapshot import SnapshotStore
from tests.support import FakeClock


def load(**simulated: object) -> config_mod.Config:
    settings = {"enabled": True, "profile": "hgx-b200", **simulated}
    return config_mod.load(None, environ={}, flags={"sources": {"simulated": settings,
                                                                "preflight": {"enabled": True}}})


def by_name(sources: list) -> dict:
    return {source.name: source for source in sources}


def test_unchanged_sources_are_kept_and_a_scenario_change_switches_the_running_simulation():
    running = by_name(build_sources(load()))
    again = by_name(build_sources(load(), running))
    assert again["simulated"] is running["simulated"] and again["preflight"] is running["preflight"]
    switched = by_name(build_sources(load(scenario="gpu-lost"), running))
    assert switched["simulated"] is running["simulated"] and running["simulated"].scenario == "gpu-lost"


def test_a_changed_source_is_rebuilt_and_so_is_the_source_built_from_it():
    running = by_name(build_sources(load()))
    rebuilt = by_name(build_sources(load(seed=7), running))
    assert rebuilt["simulated"] is not running["simulated"]
    assert rebuilt["preflight"] is not running["preflight"]


def test_replacing_sources_drops_the_series_of_a_removed_one_and_keeps_error_counts():
    clock = FakeClock()
    store = SnapshotStore()
    first = build_sources(load())
    scheduler = Scheduler(first, store, "simulated", clock=clock)
    for runner in scheduler.runners.values():
        runner.run_once()
    assert b"blackwell_preflight_check{" in store.current().text
    scheduler.runners["simulated"].errors["timeout"] += 2  # as if two polls had timed out
    fresh = build_sources(load(seed=7))
    scheduler.replace_sources([s for s in fresh if s.name == "simulated"])
    assert scheduler.runners["simulated"].source is fresh[0]
    assert scheduler.runners["simulated"].errors["timeout"] == 2
    assert b"blackwell_preflight_check{" not in store.current().text
    assert list(scheduler.runners) == ["simulated"]
