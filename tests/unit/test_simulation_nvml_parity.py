"""Each simulated profile emits the GPU families, label names and enumerated label values that the
real nvml source emits for that hardware, run against the recorded H200 pair (h200x2) or the same
recording made Blackwell (the replay's make_blackwell, for hgx-b200 and gb200-tray).

The known gaps are listed so that a new one cannot slip in unnoticed; remove an entry once the
simulation (exporter/sources/simulated/) models it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.snapshot import Family
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock

NVML = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "nvml"
# Label values that name a device or a reading rather than one of a fixed set of kinds.
IDENTITY_LABELS = {"gpu", "uuid", "name", "pci_bus_id", "serial", "vbios_version", "driver_version", "cluster_uuid",
                   "clique_id", "remote_pci_bus_id", "chassis_serial_number", "module_id", "host_id", "slot_number",
                   "tray_index", "peer_type", "state", "status", "cuda_version", "link", "remote_type"}

# Families the real source emits on this hardware that the simulation does not (all declared real-only
# in the catalog today, so a dashboard built on the simulation never sees them).
# (Fabric membership is simulated on the nvl72-tray profile only, where the rack rules join on it.)
_REAL_ONLY = {"blackwell_gpu_fabric_health_mask", "blackwell_gpu_fabric_info", "blackwell_gpu_nvml_stalled", "blackwell_gpu_pcie_errors_total",
              "blackwell_gpu_platform_info"}
KNOWN_REAL_ONLY = {
    "h200x2": _REAL_ONLY,
    "hgx-b200": _REAL_ONLY | {"blackwell_nvlink5_fec_history_total", "blackwell_nvlink5_packets_total"},
    "gb200-tray": _REAL_ONLY | {"blackwell_nvlink5_fec_history_total", "blackwell_nvlink5_packets_total"},
}
# The replay has no Grace and no C2C link, so these are the simulation's only (and right) on a GB200 tray.
KNOWN_SIMULATED_ONLY = {
    "gb200-tray": {"blackwell_c2c_link_up", "blackwell_c2c_rx_bytes_per_second", "blackwell_c2c_tx_bytes_per_second"},
}
# The replay's make_blackwell keeps the H200 recording's NVLink version (4); the simulation says 5, as
# a B200 reports. A gap of the replay, not of the simulation.
REPLAY_ONLY_VALUES = {("blackwell_nvlink_link_info", "version"): {"4"}}


def _gpu_families(families: list[Family], seen: dict[str, Family]) -> None:
    for family in families:
        if family.samples and "nvml" in family.metric.sources:
            seen.setdefault(family.metric.name, family).samples.extend(family.samples)


def real_families(blackwell: bool) -> dict[str, Family]:
    recording = json.loads((NVML / "h200x2" / "nvml_probe.json").read_text())
    backend = ReplayBackend(recording, json.loads((NVML / "h200x2_overlay.json").read_text())["calls"])
    if blackwell:
        backend.make_blackwell(0)
        backend.make_blackwell(1)
    clock = FakeClock()
    backend.set_clock(clock)
    source = NvmlSource(NvmlConfig(xid_events=False, gpu_deadline=0.5, timeout=2.0, legacy_nvlink_interval=0),
                        backend=backend, clock=clock)
    source.probe()
    seen: dict[str, Family] = {}
    for _ in range(3):
        _gpu_families(source.poll(), seen)
        clock.advance(10)
    return seen


def simulated_families(profile: str) -> dict[str, Family]:
    clock = FakeClock()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile=profile), clock=clock)
    source.probe()
    seen: dict[str, Family] = {}
    for _ in range(3):
        _gpu_families(source.poll(), seen)
        clock.advance(10)
    return seen


def kinds(family: Family) -> dict[str, set[str]]:
    """Each enumerated label's values (``kind``, ``counter``, ``reason`` ...) across the samples."""
    out: dict[str, set[str]] = {}
    for labels, _ in family.samples:
        for name, value in zip(family.metric.labels, labels, strict=True):
            if name not in IDENTITY_LABELS:
                out.setdefault(name, set()).add(value)
    return out


@pytest.mark.parametrize(("profile", "blackwell"), [("h200x2", False), ("hgx-b200", True), ("gb200-tray", True)])
def test_each_profile_emits_the_families_and_labels_of_the_real_source(profile: str, blackwell: bool) -> None:
    real, simulated = real_families(blackwell), simulated_families(profile)
    assert set(real) - set(simulated) == KNOWN_REAL_ONLY[profile]
    assert set(simulated) - set(real) == KNOWN_SIMULATED_ONLY.get(profile, set())
    for name in set(real) & set(simulated):
        assert real[name].metric.labels == simulated[name].metric.labels, name
        real_kinds, simulated_kinds = kinds(real[name]), kinds(simulated[name])
        for label, values in real_kinds.items():
            if blackwell:
                values = values - REPLAY_ONLY_VALUES.get((name, label), set())
            assert values <= simulated_kinds.get(label, set()), f"{name}: the simulation lacks {label} values " \
                f"{sorted(values - simulated_kinds.get(label, set()))}"
