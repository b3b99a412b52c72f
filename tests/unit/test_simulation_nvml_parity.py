"""Each simulated profile emits, at every detail tier, the GPU families, label names and enumerated
label values that the real nvml source emits for that hardware, and nothing it does not: the real
source runs against the recorded H200 pair (h200x2) or the same recording made Blackwell (the
replay's make_blackwell, for the Blackwell profiles; make_grace adds the GB200's Grace C2C link).

Both sides are trimmed by the same :class:`DetailSelection` the daemon publishes through, so a
family that only one side emits fails here at the tier where it shows, in either direction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.catalog.tiers import TIER_NAMES, DetailConfig, DetailSelection
from exporter.promtext import parse
from exporter.snapshot import Snapshot
from exporter.sources.base import Source
from exporter.sources.nvml.backend import TIMEOUT
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from exporter.sources.simulated.profiles import PROFILES, Profile
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock

NVML = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "nvml"
# Label values that name a device or a reading rather than one of a fixed set of kinds.
IDENTITY_LABELS = {"gpu", "uuid", "name", "pci_bus_id", "serial", "vbios_version", "driver_version", "cluster_uuid",
                   "clique_id", "remote_pci_bus_id", "chassis_serial_number", "module_id", "host_id", "slot_number",
                   "tray_index", "peer_type", "state", "status", "cuda_version", "link", "remote_type"}
POLLS = 3  # GPM rates need two samples: the real source has them from its second poll on

Labels = dict[str, dict[str, set[str]]]  # family -> label name -> enumerated values seen


def real_source(profile: Profile) -> tuple[NvmlSource, FakeClock, ReplayBackend]:
    """The nvml source on the replay, made into the profile's GPU (two of them: the recording's)."""
    recording = json.loads((NVML / "h200x2" / "nvml_probe.json").read_text())
    backend = ReplayBackend(recording, json.loads((NVML / "h200x2_overlay.json").read_text())["calls"])
    for index in (0, 1):
        if profile.gpu.architecture == "blackwell":
            backend.make_blackwell(index, profile.gpu.name)
        elif profile.gpu.architecture != "hopper":
            raise AssertionError(f"no replay of a {profile.gpu.architecture} GPU for profile {profile.name}")
        if profile.c2c:
            backend.make_grace(index)
    clock = FakeClock()
    backend.set_clock(clock)
    backend.phase = "load"
    return NvmlSource(NvmlConfig(xid_events=False, gpu_deadline=0.5, timeout=2.0, legacy_nvlink_interval=0),
                      backend=backend, clock=clock), clock, backend


def simulated_source(profile: Profile, scenario: str = "healthy") -> tuple[SimulatedSource, FakeClock]:
    clock = FakeClock()
    return SimulatedSource(SimulatedConfig(enabled=True, profile=profile.name, scenario=scenario), clock=clock), clock


def exported(source: Source, clock: FakeClock, tier: str, fault: Callable[[], None] | None = None) -> Labels:
    """The GPU families (those the nvml source may fill) that ``tier`` publishes over a few polls,
    with ``fault`` injected once the source has probed the GPUs."""
    selection = DetailSelection(DetailConfig(tier=tier))
    source.probe()
    if fault is not None:
        fault()
    seen: Labels = {}
    for _ in range(POLLS):
        families = [f for f in source.poll() if "nvml" in f.metric.sources]
        published = selection.apply(Snapshot.of(source.name, families).rendered)
        for sample in parse("".join(published.values())).samples:
            labels = seen.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add("*" if name in IDENTITY_LABELS else value)
        clock.advance(10)
    source.close()
    return seen


def _differences(real: Labels, simulated: Labels) -> list[str]:
    problems = [f"{name}: only the real source emits it" for name in sorted(set(real) - set(simulated))]
    problems += [f"{name}: only the simulation emits it" for name in sorted(set(simulated) - set(real))]
    for name in sorted(set(real) & set(simulated)):
        if set(real[name]) != set(simulated[name]):
            problems.append(f"{name}: labels {sorted(real[name])} (real) != {sorted(simulated[name])} (simulated)")
            continue
        for label, values in sorted(real[name].items()):
            if values != simulated[name][label]:
                problems.append(f"{name}: {label} values only real {sorted(values - simulated[name][label])}, "
                                f"only simulated {sorted(simulated[name][label] - values)}")
    return problems


@pytest.mark.parametrize("tier", TIER_NAMES)
@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_emits_the_families_and_labels_of_the_real_source(profile: str, tier: str) -> None:
    real = exported(*real_source(PROFILES[profile])[:2], tier)
    simulated = exported(*simulated_source(PROFILES[profile]), tier)
    assert _differences(real, simulated) == []


# Scenarios whose fault the replay can inject into the real source the way NVML shows it.
REPLAYED_FAULTS: dict[str, Callable[[ReplayBackend], None]] = {
    "nvml-read-errors": lambda backend: backend.fail(1, "memory_info", TIMEOUT),
    "gpu-lost": lambda backend: backend.lose_gpu(1),
}


@pytest.mark.parametrize("tier", TIER_NAMES)
@pytest.mark.parametrize("scenario", REPLAYED_FAULTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_a_fault_shows_in_the_same_families_and_labels_as_on_the_real_source(profile: str, scenario: str,
                                                                            tier: str) -> None:
    source, clock, backend = real_source(PROFILES[profile])
    real = exported(source, clock, tier, lambda: REPLAYED_FAULTS[scenario](backend))
    simulated = exported(*simulated_source(PROFILES[profile], scenario), tier)
    assert _differences(real, simulated) == []


def test_the_comparison_sees_a_family_missing_on_either_side() -> None:
    real: Labels = {"blackwell_gpu_up": {"gpu": {"*"}}, "blackwell_gpu_pcie_errors_total": {"kind": {"fatal"}}}
    simulated: Labels = {"blackwell_gpu_up": {"gpu": {"*"}}, "blackwell_gpu_pcie_errors_total": {"kind": {"lane"}},
                         "blackwell_nvlink5_packets_total": {"direction": {"tx"}}}
    assert _differences(real, simulated) == [
        "blackwell_nvlink5_packets_total: only the simulation emits it",
        "blackwell_gpu_pcie_errors_total: kind values only real ['fatal'], only simulated ['lane']",
    ]
    assert _differences(simulated, real)[0] == "blackwell_nvlink5_packets_total: only the real source emits it"
