"""dcgm-exporter compatible names, per generation, made by the nvml source from the recorded H200s.

The expected names and units come from DCGM's field definitions (see docs/dcgm-compat.md); the
dashboard queries are copied from dcgm-exporter's own Grafana dashboard (tests/fixtures/dcgm_exporter/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exporter.snapshot import Snapshot, SnapshotStore
from exporter.sources.nvml.compat import exporter_hostname
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock as Clock

ROOT = Path(__file__).resolve().parents[2]
NVML = ROOT / "tests" / "fixtures" / "nvml"
DASHBOARDS = sorted((ROOT / "tests" / "fixtures" / "dcgm_exporter").glob("dashboard_queries_*.json"))
GPU0 = "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37"
MIB = 2**20

# DCGM 4.7's names for the fields dcgm-exporter's dashboards and default counters use
# (dcgm_fields.py _DEPRECATED_ALIASES, go-dcgm base-unit fields 1603/1604/1611, ratio/byte fields 1613-1627).
RENAMED_IN_4_9 = {
    "DCGM_FI_DEV_SM_CLOCK": "DCGM_FI_DEV_SM_CLOCK_HERTZ",
    "DCGM_FI_DEV_MEM_CLOCK": "DCGM_FI_DEV_MEMORY_CLOCK_HERTZ",
    "DCGM_FI_DEV_MEMORY_TEMP": "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS",
    "DCGM_FI_DEV_GPU_TEMP": "DCGM_FI_DEV_GPU_TEMP_CELSIUS",
    "DCGM_FI_DEV_POWER_USAGE": "DCGM_FI_DEV_BOARD_POWER_WATTS",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "DCGM_FI_DEV_PCIE_REPLAY_TOTAL",
    "DCGM_FI_DEV_GPU_UTIL": "DCGM_FI_DEV_GPU_UTIL_RATIO",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "DCGM_FI_DEV_MEMORY_UTIL_RATIO",
    "DCGM_FI_DEV_FB_USED": "DCGM_FI_DEV_FB_USED_BYTES",
    "DCGM_FI_DEV_FB_FREE": "DCGM_FI_DEV_FB_FREE_BYTES",
    "DCGM_FI_DEV_XID_ERRORS": "DCGM_FI_DEV_XID_ERROR",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "DCGM_FI_DEV_ROW_REMAP_FAILED",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "DCGM_FI_PROF_TENSOR_UTIL_RATIO",
    "DCGM_FI_PROF_DRAM_ACTIVE": "DCGM_FI_PROF_DRAM_UTIL_RATIO",
}


def poll(generation: object) -> tuple[dict[tuple[str, str], float], str]:
    """Two polls of the recorded H200 pair (GPU 1 made a Blackwell so GPM answers): the samples as
    (metric, gpu) -> value, and the exposition text."""
    recording = json.loads((NVML / "h200x2" / "nvml_probe.json").read_text())
    backend = ReplayBackend(recording, json.loads((NVML / "h200x2_overlay.json").read_text())["calls"])
    backend.make_blackwell(1)
    clock = Clock()
    backend.set_clock(clock)
    config = NvmlConfig(xid_events=False, gpu_deadline=0.5, timeout=2.0, dcgm_compat_names=generation)
    source = NvmlSource(config, backend=backend, clock=clock)
    source.probe()
    source.poll()
    clock.now += 10
    families = source.poll()
    store = SnapshotStore()
    store.publish("nvml", Snapshot.of("nvml", families), lambda: Snapshot("exporter", {}))
    values = {(family.metric.name, labels[0]): float(value) for family in families for labels, value in family.samples}
    return values, store.current().text.decode()


def test_the_setting_names_a_generation_and_rejects_others_clearly() -> None:
    assert NvmlConfig(dcgm_compat_names=True).dcgm_compat_names == "pre-4.9"  # what true meant before 4.9
    assert NvmlConfig().dcgm_compat_names is False
    assert NvmlConfig(dcgm_compat_names="4.9").dcgm_compat_names == "4.9"
    assert NvmlConfig(dcgm_compat_names="pre-4.6").dcgm_compat_names == "pre-4.6"
    with pytest.raises(ValueError, match=r"dcgm_compat_names is '4\.8'; use false, true .*\"4\.9\""):
        NvmlConfig(dcgm_compat_names="4.8")


def test_pre_4_9_units_are_mhz_mj_percent_and_mib() -> None:
    s, _ = poll("pre-4.9")
    assert s[("DCGM_FI_DEV_SM_CLOCK", "0")] == s[("blackwell_gpu_sm_clock_hertz", "0")] / 1e6 == 345
    assert s[("DCGM_FI_DEV_MEM_CLOCK", "0")] == s[("blackwell_gpu_memory_clock_hertz", "0")] / 1e6
    assert s[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0")] == pytest.approx(
        s[("blackwell_gpu_energy_joules_total", "0")] * 1000)
    assert s[("DCGM_FI_DEV_GPU_UTIL", "0")] == pytest.approx(s[("blackwell_gpu_utilization_ratio", "0")] * 100)
    assert s[("DCGM_FI_DEV_FB_FREE", "0")] == pytest.approx(150109880320 / MIB)
    assert s[("DCGM_FI_DEV_POWER_USAGE", "0")] == pytest.approx(81.447, abs=0.01)


def test_4_9_units_are_base_units_hz_j_ratio_and_bytes() -> None:
    s, _ = poll("4.9")
    assert s[("DCGM_FI_DEV_SM_CLOCK_HERTZ", "0")] == 345e6
    assert s[("DCGM_FI_DEV_MEMORY_CLOCK_HERTZ", "0")] == s[("blackwell_gpu_memory_clock_hertz", "0")]
    assert s[("DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", "0")] == s[("blackwell_gpu_energy_joules_total", "0")] > 5456
    assert s[("DCGM_FI_DEV_GPU_UTIL_RATIO", "0")] == s[("blackwell_gpu_utilization_ratio", "0")]
    assert 0 <= s[("DCGM_FI_DEV_MEMORY_UTIL_RATIO", "0")] <= 1
    assert s[("DCGM_FI_DEV_FB_FREE_BYTES", "0")] == 150109880320
    assert s[("DCGM_FI_DEV_FB_USED_BYTES", "0")] == 0
    assert s[("DCGM_FI_DEV_BOARD_POWER_WATTS", "0")] == pytest.approx(81.447, abs=0.01)
    assert not [name for name, _ in s if name in RENAMED_IN_4_9], "4.9 drops the old names"


@pytest.mark.parametrize("old", sorted(RENAMED_IN_4_9))
def test_every_pre_4_9_field_has_its_4_9_name_with_the_same_reading(old: str) -> None:
    before, _ = poll("pre-4.9")
    after, _ = poll("4.9")
    scale = {"DCGM_FI_DEV_SM_CLOCK": 1e6, "DCGM_FI_DEV_MEM_CLOCK": 1e6, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 1e-3,
             "DCGM_FI_DEV_GPU_UTIL": 0.01, "DCGM_FI_DEV_MEM_COPY_UTIL": 0.01, "DCGM_FI_DEV_FB_USED": MIB,
             "DCGM_FI_DEV_FB_FREE": MIB}.get(old, 1.0)
    gpus = [g for name, g in before if name == old]
    assert gpus, f"{old} is not emitted"
    for g in gpus:
        assert after[(RENAMED_IN_4_9[old], g)] == pytest.approx(before[(old, g)] * scale, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize(("generation", "host_label", "driver_label"), [
    ("pre-4.6", "Hostname", "DCGM_FI_DRIVER_VERSION"),
    ("pre-4.9", "hostname", "DCGM_FI_DRIVER_VERSION"),
    ("4.9", "hostname", "DCGM_FI_SYSTEM_DRIVER_VERSION"),
])
def test_each_generation_has_its_own_label_names(generation: str, host_label: str, driver_label: str) -> None:
    _, text = poll(generation)
    name = "DCGM_FI_DEV_GPU_TEMP_CELSIUS" if generation == "4.9" else "DCGM_FI_DEV_GPU_TEMP"
    line = next(line for line in text.splitlines() if line.startswith(name + "{") and f'UUID="{GPU0}"' in line)
    assert line.startswith(f'{name}{{gpu="0",UUID="{GPU0}",pci_bus_id="00000000:00:06.0",device="nvidia0",'
                           f'modelName="NVIDIA H200",{host_label}="{exporter_hostname()}",'
                           f'{driver_label}="580.159.04"}}')


def _selector_labels(query: str) -> set[str]:
    """Label names a query matches on ({name=~...}) or reads with label_values(metric, name)."""
    names = {name for selector in re.findall(r"\{([^}]*)\}", query)
             for name in re.findall(r"(\w+)\s*[=!]~?", selector)}
    names |= set(re.findall(r"label_values\([^,]+,\s*(\w+)\)", query))
    return names - {"instance", "job"}  # Prometheus adds these at scrape time


@pytest.mark.parametrize("fixture", DASHBOARDS, ids=lambda path: path.stem)
def test_dcgm_exporters_own_dashboard_finds_its_metrics_and_labels(fixture: Path) -> None:
    dashboard = json.loads(fixture.read_text())
    _, text = poll(dashboard["generation"])
    series = [line for line in text.splitlines() if line.startswith("DCGM_FI_")]
    for query in dashboard["queries"]:
        for metric in set(re.findall(r"DCGM_FI_\w+", query)):
            emitted = [line for line in series if line.startswith(metric + "{")]
            assert emitted, f"{metric} (queried by {query!r}) is not emitted"
            for label in _selector_labels(query):
                assert all(f'{label}="' in line for line in emitted), f"{metric} lacks label {label} for {query!r}"
