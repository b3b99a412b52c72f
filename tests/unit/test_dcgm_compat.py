"""dcgm-exporter compatible names, per generation, made by the nvml source from the recorded H200s and
by the dcgm source from a DCGM that reports an H200 (tests/dcgm_fake.py).

The expected names and units come from DCGM's field definitions and dcgm-exporter's counters CSVs (see
docs/dcgm-compat.md); the dashboard queries are copied from dcgm-exporter's own Grafana dashboard
(tests/fixtures/dcgm_exporter/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.base import PollError
from exporter.sources.dcgm import DcgmConfig, DcgmSource
from exporter.sources.dcgm_exporter_names import exporter_hostname
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from tests.dcgm_fake import FP64_BLANK, FP64_NOT_SUPPORTED, H200, INT64_BLANK, FakeDcgm
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock as Clock

ROOT = Path(__file__).resolve().parents[2]
NVML = ROOT / "tests" / "fixtures" / "nvml"
DASHBOARDS = sorted((ROOT / "tests" / "fixtures" / "dcgm_exporter").glob("dashboard_queries_*.json"))
GPU0 = "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37"
MIB = 2**20

# DCGM 4.7's names for the fields dcgm-exporter's dashboards and default counters use (dcgm_fields.h: the
# "renamed per DCGM Field Naming Standard" aliases, base-unit fields 1603/1604/1611/1613/1614/1626-1628).
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
    "DCGM_FI_DEV_FB_RESERVED": "DCGM_FI_DEV_FB_RESERVED_BYTES",
    "DCGM_FI_DEV_XID_ERRORS": "DCGM_FI_DEV_XID_ERROR",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "DCGM_FI_DEV_ROW_REMAP_FAILED",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "DCGM_FI_PROF_TENSOR_UTIL_RATIO",
    "DCGM_FI_PROF_DRAM_ACTIVE": "DCGM_FI_PROF_DRAM_UTIL_RATIO",
}


def nvml_families(generation: object) -> list[Family]:
    """The second poll of the recorded H200 pair (GPU 1 made a Blackwell so GPM answers)."""
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
    return source.poll()


def dcgm_families(generation: object, gpus: dict[int, dict[int, object]] | None = None) -> list[Family]:
    """One poll of the dcgm source on a DCGM that reports ``gpus`` (default: the H200 of tests/dcgm_fake.py)."""
    source = DcgmSource(DcgmConfig(enabled=True, dcgm_compat_names=generation),
                        bindings=FakeDcgm(gpus if gpus is not None else {0: H200}).bindings)
    source.probe()
    return source.poll()


SOURCES = {"nvml": nvml_families, "dcgm": dcgm_families}


def poll(generation: object, source: str = "nvml") -> tuple[dict[tuple[str, str], float], str]:
    """A source's samples as (metric, gpu) -> value, and the exposition text it renders."""
    return _rendered(source, SOURCES[source](generation))


def poll_dcgm_gpus(generation: object, gpus: dict[int, dict[int, object]]) -> tuple[dict[tuple[str, str], float], str]:
    return _rendered("dcgm", dcgm_families(generation, gpus))


def _rendered(source: str, families: list[Family]) -> tuple[dict[tuple[str, str], float], str]:
    store = SnapshotStore()
    store.publish(source, Snapshot.of(source, families), lambda: Snapshot("exporter", {}))
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


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("old", sorted(RENAMED_IN_4_9))
def test_every_pre_4_9_field_has_its_4_9_name_with_the_same_reading(old: str, source: str) -> None:
    before, _ = poll("pre-4.9", source)
    after, _ = poll("4.9", source)
    scale = {"DCGM_FI_DEV_SM_CLOCK": 1e6, "DCGM_FI_DEV_MEM_CLOCK": 1e6, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 1e-3,
             "DCGM_FI_DEV_GPU_UTIL": 0.01, "DCGM_FI_DEV_MEM_COPY_UTIL": 0.01, "DCGM_FI_DEV_FB_USED": MIB,
             "DCGM_FI_DEV_FB_FREE": MIB, "DCGM_FI_DEV_FB_RESERVED": MIB}.get(old, 1.0)
    gpus = [g for name, g in before if name == old]
    assert gpus, f"{old} is not emitted"
    for g in gpus:
        assert after[(RENAMED_IN_4_9[old], g)] == pytest.approx(before[(old, g)] * scale, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize(("generation", "host_label", "driver_label"), [
    ("pre-4.6", "Hostname", "DCGM_FI_DRIVER_VERSION"),
    ("pre-4.9", "hostname", "DCGM_FI_DRIVER_VERSION"),
    ("4.9", "hostname", "DCGM_FI_SYSTEM_DRIVER_VERSION"),
])
def test_each_generation_has_its_own_label_names(generation: str, host_label: str, driver_label: str,
                                                 source: str) -> None:
    _, text = poll(generation, source)
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


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("fixture", DASHBOARDS, ids=lambda path: path.stem)
def test_dcgm_exporters_own_dashboard_finds_its_metrics_and_labels(fixture: Path, source: str) -> None:
    dashboard = json.loads(fixture.read_text())
    _, text = poll(dashboard["generation"], source)
    series = [line for line in text.splitlines() if line.startswith("DCGM_FI_")]
    for query in dashboard["queries"]:
        for metric in set(re.findall(r"DCGM_FI_\w+", query)):
            emitted = [line for line in series if line.startswith(metric + "{")]
            assert emitted, f"{metric} (queried by {query!r}) is not emitted"
            for label in _selector_labels(query):
                assert all(f'{label}="' in line for line in emitted), f"{metric} lacks label {label} for {query!r}"


# -- the dcgm source: the same names and labels, each value from the DCGM field dcgm-exporter reads ----------

def _compat_shapes(families: list[Family]) -> set[tuple[str, tuple[str, ...]]]:
    return {(family.metric.name, family.metric.labels) for family in families
            if family.metric.name.startswith("DCGM_FI_") and family.samples}


@pytest.mark.parametrize("generation", ["pre-4.6", "pre-4.9", "4.9"])
def test_the_dcgm_source_emits_the_names_and_label_names_the_nvml_source_emits(generation: str) -> None:
    nvml, dcgm = _compat_shapes(nvml_families(generation)), _compat_shapes(dcgm_families(generation))
    assert len(nvml) == 19
    assert dcgm == nvml


def test_dcgm_source_before_4_9_passes_dcgms_own_values_through() -> None:
    s, _ = poll("pre-4.9", "dcgm")
    assert s[("DCGM_FI_DEV_SM_CLOCK", "0")] == 1980 and s[("DCGM_FI_DEV_MEM_CLOCK", "0")] == 3201  # MHz
    assert s[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0")] == 5_472_925  # mJ
    assert s[("DCGM_FI_DEV_GPU_UTIL", "0")] == 93 and s[("DCGM_FI_DEV_MEM_COPY_UTIL", "0")] == 19  # %
    assert (s[("DCGM_FI_DEV_FB_FREE", "0")], s[("DCGM_FI_DEV_FB_USED", "0")],
            s[("DCGM_FI_DEV_FB_RESERVED", "0")]) == (142555, 600, 616)  # MiB, fields 251-253
    assert s[("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0")] == 0.91, "field 1001, not GPU_UTIL as NVML has no such reading"
    assert s[("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "0")] == 3 and s[("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "0")] == 2
    assert s[("DCGM_FI_DEV_XID_ERRORS", "0")] == 0


def test_dcgm_source_from_4_9_converts_to_base_units() -> None:
    s, _ = poll("4.9", "dcgm")
    assert s[("DCGM_FI_DEV_SM_CLOCK_HERTZ", "0")] == 1980e6
    assert s[("DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", "0")] == pytest.approx(5472.925)
    assert s[("DCGM_FI_DEV_GPU_UTIL_RATIO", "0")] == pytest.approx(0.93)
    assert s[("DCGM_FI_DEV_FB_FREE_BYTES", "0")] == 142555 * MIB
    assert s[("DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", "0")] == 0.91
    assert s[("DCGM_FI_DEV_BOARD_POWER_WATTS", "0")] == pytest.approx(81.4)


def test_a_value_dcgm_holds_blank_is_missing_as_it_is_from_dcgm_exporter() -> None:
    gpu = {**H200, 1005: FP64_BLANK, 1001: FP64_NOT_SUPPORTED, 253: INT64_BLANK, 230: INT64_BLANK}
    s, _ = poll_dcgm_gpus("pre-4.9", {0: gpu})
    missing = {"DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_FB_RESERVED",
               "DCGM_FI_DEV_XID_ERRORS"}
    assert not [name for name, _ in s if name in missing]
    assert s[("DCGM_FI_DEV_GPU_TEMP", "0")] == 36 and s[("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "0")] == 0.54


def test_a_gpu_dcgm_reports_lost_has_no_dcgm_exporter_series() -> None:
    other = {**H200, 52: 1, 54: "GPU-other", 57: "00000000:00:07.0"}
    s, _ = poll_dcgm_gpus("pre-4.9", {0: {**H200, 230: 79}, 1: other})
    assert {g for name, g in s if name.startswith("DCGM_FI_")} == {"1"}
    assert s[("blackwell_gpu_up", "0")] == 0


def test_dcgm_source_without_the_option_watches_and_emits_no_compat_fields() -> None:
    dcgm = FakeDcgm({0: H200})
    source = DcgmSource(DcgmConfig(enabled=True), bindings=dcgm.bindings)
    source.probe()
    assert not [f for f in source.poll() if f.metric.name.startswith("DCGM_FI_")]
    assert not {1, 251, 1001} & dcgm.watched, "driver version, FB free, GR engine are watched for compat only"


def test_dcgm_source_setting_names_a_generation_and_rejects_others_clearly() -> None:
    assert DcgmConfig(dcgm_compat_names=True).dcgm_compat_names == "pre-4.9"
    assert DcgmConfig().dcgm_compat_names is False
    assert DcgmConfig(dcgm_compat_names="pre-4.6").dcgm_compat_names == "pre-4.6"
    with pytest.raises(ValueError, match=r"dcgm_compat_names is '5'; use false, true .*\"4\.9\""):
        DcgmConfig(dcgm_compat_names="5")


def test_dcgm_source_read_failure_with_compat_names_is_still_a_poll_error() -> None:
    dcgm = FakeDcgm({0: H200})
    source = DcgmSource(DcgmConfig(enabled=True, dcgm_compat_names="4.9"), bindings=dcgm.bindings)
    source.probe()
    dcgm.stop()
    with pytest.raises(PollError, match="lost the connection to nv-hostengine"):
        source.poll()
