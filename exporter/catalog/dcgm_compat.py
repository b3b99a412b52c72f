"""dcgm-exporter's metric and label names, per naming generation, as data.

The nvml and dcgm sources (option ``dcgm_compat_names``) fill these. A row says which of our
readings feeds a dcgm-exporter field (the nvml source), which DCGM field dcgm-exporter reads for
it before 4.9 (the dcgm source reads that id), its name, unit and Prometheus type before
dcgm-exporter 4.9, and its name, DCGM field id and unit from 4.9 (DCGM 4.7), where DCGM renamed
its fields and gave the base-unit versions new ids.

Checked entry by entry against NVIDIA's files (docs/dcgm-compat.md names them with their commits):

* pre-4.9 names and types: dcgm-exporter ``etc/default-counters.csv`` (00d6d344, and 7ad58324 =
  chart 4.8.3, which adds the DCP ratios and FB_RESERVED) and ``etc/dcp-metrics-included.csv``
  (99a774bb, 084a245d);
* legacy ids and units: DCGM ``dcgmlib/dcgm_fields.h`` (NVIDIA/DCGM 28bfbd4c and 51b65cce);
* 4.9 names at the same id: the "renamed per DCGM Field Naming Standard" aliases of that header
  (51b65cce);
* 4.9 base-unit ids (1603, 1604, 1611, 1613, 1614, 1626-1628): ``dcgm_fields.h`` as vendored by
  NVIDIA/go-dcgm at a9ee3d74 (``pkg/dcgm/dcgm_fields.h``, the DCGM 4.7 header; the DCGM repository's
  newest stored header ends at field 1533).

dcgm-exporter 4.9's own counters CSV is not in the index we read: the 4.9 names are DCGM 4.7's field
names, as dcgm-exporter names each metric after its field.
"""

from __future__ import annotations

from dataclasses import dataclass

# Generations a user can pick. "pre-4.6": the ``Hostname`` label; "pre-4.9": 4.6 to 4.8, ``hostname``;
# "4.9": DCGM 4.7's names and base units, ``hostname``, ``DCGM_FI_SYSTEM_DRIVER_VERSION``.
GENERATIONS = ("pre-4.6", "pre-4.9", "4.9")
LEGACY_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "DCGM_FI_DRIVER_VERSION")
PRE_4_6_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
CURRENT_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "DCGM_FI_SYSTEM_DRIVER_VERSION")
DRIVER_VERSION_ID = 1  # DCGM_FI_DRIVER_VERSION, from DCGM 4.7 DCGM_FI_SYSTEM_DRIVER_VERSION; a global field

MIB = 2.0**20


@dataclass(frozen=True)
class CompatField:
    """One dcgm-exporter field: what feeds it, and its name and unit per generation.

    ``reading`` is our metric and the label values after ``gpu`` that select the sample (the nvml
    source); the scales multiply our value (in our base unit) into the field's unit. ``reading`` empty
    marks a field the nvml source computes from several readings (FB_FREE) or from the XID watcher.
    ``legacy_id`` is the DCGM field dcgm-exporter reads for the pre-4.9 name, in ``legacy_unit``.
    ``exporter_type`` is the type dcgm-exporter's counters CSV gives the pre-4.9 name.
    """

    reading: tuple[str, tuple[str, ...]]
    legacy: str
    legacy_id: int
    legacy_unit: str
    legacy_scale: float
    exporter_type: str
    current: str
    current_id: int
    current_unit: str
    current_scale: float

    def name(self, generation: str) -> str:
        return self.current if generation == "4.9" else self.legacy

    def scale(self, generation: str) -> float:
        """Multiplies our base-unit reading into the unit of ``generation``."""
        return self.current_scale if generation == "4.9" else self.legacy_scale

    def from_legacy(self, generation: str) -> float:
        """Multiplies a value of DCGM field ``legacy_id`` into the unit of ``generation``."""
        return self.current_scale / self.legacy_scale if generation == "4.9" else 1.0


def _row(metric: str, selector: tuple[str, ...], legacy: str, legacy_id: int, legacy_unit: str, legacy_scale: float,
         exporter_type: str, current: str, current_id: int, current_unit: str,
         current_scale: float = 1.0) -> CompatField:
    return CompatField((metric, selector), legacy, legacy_id, legacy_unit, legacy_scale, exporter_type, current,
                       current_id, current_unit, current_scale)


FIELDS: tuple[CompatField, ...] = (
    # Base units under new ids (go-dcgm's dcgm_fields.h a9ee3d74: "Base unit field IDs (1600-1799)");
    # the legacy ids keep their units (dcgm_fields.h 51b65cce; "MHz", "mJ", "%", "MiB" per the counters CSV).
    _row("blackwell_gpu_sm_clock_hertz", (), "DCGM_FI_DEV_SM_CLOCK", 100, "MHz", 1e-6, "gauge",
         "DCGM_FI_DEV_SM_CLOCK_HERTZ", 1603, "Hz"),
    _row("blackwell_gpu_memory_clock_hertz", (), "DCGM_FI_DEV_MEM_CLOCK", 101, "MHz", 1e-6, "gauge",
         "DCGM_FI_DEV_MEMORY_CLOCK_HERTZ", 1604, "Hz"),
    # Renamed at the same id ("renamed per DCGM Field Naming Standard", dcgm_fields.h 51b65cce and a9ee3d74).
    _row("blackwell_gpu_memory_temperature_celsius", (), "DCGM_FI_DEV_MEMORY_TEMP", 140, "C", 1.0, "gauge",
         "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", 140, "C"),
    _row("blackwell_gpu_temperature_celsius", (), "DCGM_FI_DEV_GPU_TEMP", 150, "C", 1.0, "gauge",
         "DCGM_FI_DEV_GPU_TEMP_CELSIUS", 150, "C"),
    _row("blackwell_gpu_power_watts", (), "DCGM_FI_DEV_POWER_USAGE", 155, "W", 1.0, "gauge",
         "DCGM_FI_DEV_BOARD_POWER_WATTS", 155, "W"),
    _row("blackwell_gpu_energy_joules_total", (), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 156, "mJ", 1e3, "counter",
         "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", 1611, "J"),
    _row("blackwell_gpu_pcie_replay_total", (), "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 202, "count", 1.0, "counter",
         "DCGM_FI_DEV_PCIE_REPLAY_TOTAL", 202, "count"),
    # 203/204 keep their names and percent in DCGM 4.7 (a9ee3d74: "Deprecated: Use DCGM_FI_DEV_GPU_UTIL_RATIO",
    # 1613 "GPU Utilization (0.0-1.0)"); the earlier 2025-2026 header (51b65cce) had renamed 203 itself.
    _row("blackwell_gpu_utilization_ratio", (), "DCGM_FI_DEV_GPU_UTIL", 203, "%", 100.0, "gauge",
         "DCGM_FI_DEV_GPU_UTIL_RATIO", 1613, "0-1"),
    _row("blackwell_gpu_memory_utilization_ratio", (), "DCGM_FI_DEV_MEM_COPY_UTIL", 204, "%", 100.0, "gauge",
         "DCGM_FI_DEV_MEMORY_UTIL_RATIO", 1614, "0-1"),
    _row("blackwell_gpu_memory_used_bytes", (), "DCGM_FI_DEV_FB_USED", 252, "MiB", 1.0 / MIB, "gauge",
         "DCGM_FI_DEV_FB_USED_BYTES", 1627, "bytes"),
    _row("", (), "DCGM_FI_DEV_FB_FREE", 251, "MiB", 1.0 / MIB, "gauge", "DCGM_FI_DEV_FB_FREE_BYTES", 1626, "bytes"),
    _row("blackwell_gpu_memory_reserved_bytes", (), "DCGM_FI_DEV_FB_RESERVED", 253, "MiB", 1.0 / MIB, "gauge",
         "DCGM_FI_DEV_FB_RESERVED_BYTES", 1628, "bytes"),
    _row("", (), "DCGM_FI_DEV_XID_ERRORS", 230, "last XID", 1.0, "gauge", "DCGM_FI_DEV_XID_ERROR", 230, "last XID"),
    _row("blackwell_gpu_remapped_rows_total", ("uncorrectable",), "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 393,
         "rows", 1.0, "counter", "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL", 393, "rows"),
    _row("blackwell_gpu_remapped_rows_total", ("correctable",), "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 394,
         "rows", 1.0, "counter", "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL", 394, "rows"),
    _row("blackwell_gpu_remapped_rows_failure", (), "DCGM_FI_DEV_ROW_REMAP_FAILURE", 395, "0/1", 1.0, "gauge",
         "DCGM_FI_DEV_ROW_REMAP_FAILED", 395, "0/1"),
    # DCP ratios (dcp-metrics-included.csv; default-counters.csv from 4.8). The nvml source feeds
    # GR_ENGINE_ACTIVE from NVML's utilization.gpu (time a kernel ran); the dcgm source reads field 1001.
    _row("blackwell_gpu_utilization_ratio", (), "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1001, "0-1", 1.0, "gauge",
         "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", 1001, "0-1"),
    _row("blackwell_gpu_tensor_active_ratio", ("any",), "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1004, "0-1", 1.0, "gauge",
         "DCGM_FI_PROF_TENSOR_UTIL_RATIO", 1004, "0-1"),
    _row("blackwell_gpu_dram_bandwidth_utilization_ratio", (), "DCGM_FI_PROF_DRAM_ACTIVE", 1005, "0-1", 1.0, "gauge",
         "DCGM_FI_PROF_DRAM_UTIL_RATIO", 1005, "0-1"),
)

# What each field is, for the catalog's help text.
_MEANING = {
    "DCGM_FI_DEV_SM_CLOCK": "SM clock", "DCGM_FI_DEV_MEM_CLOCK": "memory clock",
    "DCGM_FI_DEV_MEMORY_TEMP": "memory temperature", "DCGM_FI_DEV_GPU_TEMP": "GPU temperature",
    "DCGM_FI_DEV_POWER_USAGE": "board power draw",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy since driver load",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "PCIe replays",
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization", "DCGM_FI_DEV_MEM_COPY_UTIL": "memory utilization",
    "DCGM_FI_DEV_FB_USED": "framebuffer used, without the driver's reserve",
    "DCGM_FI_DEV_FB_FREE": "framebuffer free, without the driver's reserve",
    "DCGM_FI_DEV_FB_RESERVED": "framebuffer the driver reserves",
    "DCGM_FI_DEV_XID_ERRORS": "last XID code seen, 0 if none; see blackwell_gpu_xid_errors_total",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "rows remapped for uncorrectable errors",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "rows remapped for correctable errors",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "1 when a row remap failed",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "graphics/compute engine active ratio (nvml source: NVML utilization.gpu)",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor pipe active ratio",
    "DCGM_FI_PROF_DRAM_ACTIVE": "DRAM bandwidth active ratio",
}


def help_rows() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, help, labels) for every field under both names, for the catalog."""
    rows = []
    for field in FIELDS:
        meaning = _MEANING[field.legacy]
        if field.exporter_type == "counter":
            meaning += "; a counter in dcgm-exporter"
        rows.append((field.legacy, f"{meaning}, {field.legacy_unit} (DCGM field {field.legacy_id}, "
                                   "dcgm-exporter before 4.9)", LEGACY_LABELS))
        rows.append((field.current, f"{meaning}, {field.current_unit} (DCGM field {field.current_id}, "
                                    "dcgm-exporter 4.9 and later)", CURRENT_LABELS))
    return rows
