"""dcgm-exporter's metric and label names, per naming generation, as data.

The nvml source (option ``dcgm_compat_names``) fills these from its own readings. A row says which
of our readings feeds a dcgm-exporter field, and its name and unit before and after dcgm-exporter
4.9 (DCGM 4.7), where DCGM renamed its fields and moved several to base units. Names, field ids
and units are taken from DCGM's field definitions (``testing/python3/dcgm_fields.py``, its
``_DEPRECATED_ALIASES`` table, and go-dcgm's base-unit field table); docs/dcgm-compat.md names the
files and commits, and where they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

# Generations a user can pick. "pre-4.6": the ``Hostname`` label; "pre-4.9": 4.6 to 4.8, ``hostname``;
# "4.9": DCGM 4.7's names and base units, ``hostname``, ``DCGM_FI_SYSTEM_DRIVER_VERSION``.
GENERATIONS = ("pre-4.6", "pre-4.9", "4.9")
LEGACY_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "DCGM_FI_DRIVER_VERSION")
PRE_4_6_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
CURRENT_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "DCGM_FI_SYSTEM_DRIVER_VERSION")

MIB = 2.0**20


@dataclass(frozen=True)
class CompatField:
    """One dcgm-exporter field: the reading that feeds it, and its name and unit per generation.

    ``reading`` is our metric and the label values after ``gpu`` that select the sample; the scales
    multiply our value (in our base unit) into the field's unit. ``reading`` empty marks a field
    computed from several readings (FB_FREE) or from the XID watcher.
    """

    reading: tuple[str, tuple[str, ...]]
    legacy: str
    legacy_unit: str
    legacy_scale: float
    current: str
    current_id: int
    current_unit: str
    current_scale: float

    def name(self, generation: str) -> str:
        return self.current if generation == "4.9" else self.legacy

    def scale(self, generation: str) -> float:
        return self.current_scale if generation == "4.9" else self.legacy_scale


def _row(metric: str, selector: tuple[str, ...], legacy: str, legacy_unit: str, legacy_scale: float,
         current: str, current_id: int, current_unit: str, current_scale: float = 1.0) -> CompatField:
    return CompatField((metric, selector), legacy, legacy_unit, legacy_scale, current, current_id, current_unit,
                       current_scale)


FIELDS: tuple[CompatField, ...] = (
    _row("blackwell_gpu_sm_clock_hertz", (), "DCGM_FI_DEV_SM_CLOCK", "MHz", 1e-6,
         "DCGM_FI_DEV_SM_CLOCK_HERTZ", 1603, "Hz"),
    _row("blackwell_gpu_memory_clock_hertz", (), "DCGM_FI_DEV_MEM_CLOCK", "MHz", 1e-6,
         "DCGM_FI_DEV_MEMORY_CLOCK_HERTZ", 1604, "Hz"),
    _row("blackwell_gpu_memory_temperature_celsius", (), "DCGM_FI_DEV_MEMORY_TEMP", "C", 1.0,
         "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", 140, "C"),
    _row("blackwell_gpu_temperature_celsius", (), "DCGM_FI_DEV_GPU_TEMP", "C", 1.0,
         "DCGM_FI_DEV_GPU_TEMP_CELSIUS", 150, "C"),
    _row("blackwell_gpu_power_watts", (), "DCGM_FI_DEV_POWER_USAGE", "W", 1.0,
         "DCGM_FI_DEV_BOARD_POWER_WATTS", 155, "W"),
    _row("blackwell_gpu_energy_joules_total", (), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "mJ", 1e3,
         "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", 1611, "J"),
    _row("blackwell_gpu_pcie_replay_total", (), "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "count", 1.0,
         "DCGM_FI_DEV_PCIE_REPLAY_TOTAL", 202, "count"),
    _row("blackwell_gpu_utilization_ratio", (), "DCGM_FI_DEV_GPU_UTIL", "%", 100.0,
         "DCGM_FI_DEV_GPU_UTIL_RATIO", 1613, "0-1"),
    _row("blackwell_gpu_memory_utilization_ratio", (), "DCGM_FI_DEV_MEM_COPY_UTIL", "%", 100.0,
         "DCGM_FI_DEV_MEMORY_UTIL_RATIO", 1614, "0-1"),
    _row("blackwell_gpu_memory_used_bytes", (), "DCGM_FI_DEV_FB_USED", "MiB", 1.0 / MIB,
         "DCGM_FI_DEV_FB_USED_BYTES", 1627, "bytes"),
    _row("", (), "DCGM_FI_DEV_FB_FREE", "MiB", 1.0 / MIB, "DCGM_FI_DEV_FB_FREE_BYTES", 1626, "bytes"),
    _row("", (), "DCGM_FI_DEV_XID_ERRORS", "last XID", 1.0, "DCGM_FI_DEV_XID_ERROR", 230, "last XID"),
    _row("blackwell_gpu_remapped_rows_total", ("uncorrectable",), "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "rows",
         1.0, "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL", 393, "rows"),
    _row("blackwell_gpu_remapped_rows_total", ("correctable",), "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "rows",
         1.0, "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL", 394, "rows"),
    _row("blackwell_gpu_remapped_rows_failure", (), "DCGM_FI_DEV_ROW_REMAP_FAILURE", "0/1", 1.0,
         "DCGM_FI_DEV_ROW_REMAP_FAILED", 395, "0/1"),
    # GR_ENGINE_ACTIVE is NVML's utilization.gpu here (time a kernel ran), not GPM's graphics-util sample.
    _row("blackwell_gpu_utilization_ratio", (), "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0-1", 1.0,
         "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", 1001, "0-1"),
    _row("blackwell_gpu_tensor_active_ratio", ("any",), "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "0-1", 1.0,
         "DCGM_FI_PROF_TENSOR_UTIL_RATIO", 1004, "0-1"),
    _row("blackwell_gpu_dram_bandwidth_utilization_ratio", (), "DCGM_FI_PROF_DRAM_ACTIVE", "0-1", 1.0,
         "DCGM_FI_PROF_DRAM_UTIL_RATIO", 1005, "0-1"),
)

# What each field is, for the catalog's help text.
_MEANING = {
    "DCGM_FI_DEV_SM_CLOCK": "SM clock", "DCGM_FI_DEV_MEM_CLOCK": "memory clock",
    "DCGM_FI_DEV_MEMORY_TEMP": "memory temperature", "DCGM_FI_DEV_GPU_TEMP": "GPU temperature",
    "DCGM_FI_DEV_POWER_USAGE": "board power draw",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy since driver load; a counter in dcgm-exporter",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "PCIe replays; a counter in dcgm-exporter",
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization", "DCGM_FI_DEV_MEM_COPY_UTIL": "memory utilization",
    "DCGM_FI_DEV_FB_USED": "framebuffer used, without the driver's reserve",
    "DCGM_FI_DEV_FB_FREE": "framebuffer free, without the driver's reserve",
    "DCGM_FI_DEV_XID_ERRORS": "last XID code seen, 0 if none; see blackwell_gpu_xid_errors_total",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "rows remapped for uncorrectable errors",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "rows remapped for correctable errors",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "1 when a row remap failed",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "graphics/compute engine active ratio (NVML utilization.gpu)",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor pipe active ratio, from GPM",
    "DCGM_FI_PROF_DRAM_ACTIVE": "DRAM bandwidth active ratio, from GPM",
}


def help_rows() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, help, labels) for every field under both names, for the catalog."""
    rows = []
    for field in FIELDS:
        meaning = _MEANING[field.legacy]
        rows.append((field.legacy, f"{meaning}, {field.legacy_unit} (dcgm-exporter before 4.9)", LEGACY_LABELS))
        rows.append((field.current, f"{meaning}, {field.current_unit} (DCGM field {field.current_id}, "
                                    "dcgm-exporter 4.9 and later)", CURRENT_LABELS))
    return rows
