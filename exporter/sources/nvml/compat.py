"""dcgm-exporter's default metric names, made from the same readings as our own names.

With ``dcgm_compat_names: true`` the nvml source also emits ``DCGM_FI_DEV_GPU_UTIL`` and the
other fields of dcgm-exporter's ``default-counters.csv``, in dcgm-exporter's units (%, MHz, W,
mJ, MiB) and with its labels ``gpu``, ``UUID``, ``device`` and ``modelName``, so dashboards and
alerts written for dcgm-exporter keep working when this sidecar replaces it. ``device`` is
``nvidia<index>`` (dcgm-exporter uses the device minor number, which equals the index on
standard installs). dcgm-exporter's ``Hostname`` label is not emitted: Prometheus' ``instance``
names the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.snapshot import Family

Sample = tuple[str, tuple[str, ...], float]

# Our (metric, label values after gpu) -> (dcgm-exporter name, factor from our unit to theirs).
_DIRECT: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {
    ("blackwell_gpu_sm_clock_hertz", ()): ("DCGM_FI_DEV_SM_CLOCK", 1e-6),
    ("blackwell_gpu_memory_clock_hertz", ()): ("DCGM_FI_DEV_MEM_CLOCK", 1e-6),
    ("blackwell_gpu_memory_temperature_celsius", ()): ("DCGM_FI_DEV_MEMORY_TEMP", 1.0),
    ("blackwell_gpu_temperature_celsius", ()): ("DCGM_FI_DEV_GPU_TEMP", 1.0),
    ("blackwell_gpu_power_watts", ()): ("DCGM_FI_DEV_POWER_USAGE", 1.0),
    ("blackwell_gpu_energy_joules_total", ()): ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e3),
    ("blackwell_gpu_pcie_replay_total", ()): ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 1.0),
    ("blackwell_gpu_utilization_ratio", ()): ("DCGM_FI_DEV_GPU_UTIL", 100.0),
    ("blackwell_gpu_memory_utilization_ratio", ()): ("DCGM_FI_DEV_MEM_COPY_UTIL", 100.0),
    ("blackwell_gpu_memory_used_bytes", ()): ("DCGM_FI_DEV_FB_USED", 1.0 / 2**20),
    ("blackwell_gpu_remapped_rows_total", ("uncorrectable",)): ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1.0),
    ("blackwell_gpu_remapped_rows_total", ("correctable",)): ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 1.0),
    ("blackwell_gpu_remapped_rows_failure", ()): ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1.0),
    ("blackwell_gpu_tensor_active_ratio", ("any",)): ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1.0),
    ("blackwell_gpu_dram_bandwidth_utilization_ratio", ()): ("DCGM_FI_PROF_DRAM_ACTIVE", 1.0),
}


def dcgm_compat_families(samples: list[Sample], gpus: Mapping[str, Any], last_xid: Mapping[str, int]) -> list[Family]:
    """dcgm-exporter named families for the GPUs in ``samples``.

    ``gpus`` maps UUID to an object with ``index`` and ``state.caps.name`` (the source's GPU entries);
    ``last_xid`` maps UUID to the most recent XID code.
    """
    labels: dict[str, tuple[str, str, str, str]] = {}
    for uuid, gpu in gpus.items():
        if gpu.state is not None:
            g = str(gpu.index)
            labels[g] = (g, uuid, f"nvidia{g}", gpu.state.caps.name)
    families: dict[str, Family] = {}

    def add(name: str, g: str, value: float) -> None:
        if g in labels:
            families.setdefault(name, Family(name)).add(labels[g], value)

    used: dict[str, float] = {}
    total: dict[str, float] = {}
    reserved: dict[str, float] = {}
    for metric, values, value in samples:
        g, rest = values[0], values[1:]
        target = _DIRECT.get((metric, rest))
        if target is not None:
            add(target[0], g, value * target[1])
        if metric == "blackwell_gpu_memory_used_bytes":
            used[g] = value
        elif metric == "blackwell_gpu_memory_total_bytes":
            total[g] = value
        elif metric == "blackwell_gpu_memory_reserved_bytes":
            reserved[g] = value
    for g in sorted(used.keys() & total.keys()):  # DCGM's FB_FREE (251) leaves out the reserve, as FB_USED does
        add("DCGM_FI_DEV_FB_FREE", g, (total[g] - used[g] - reserved.get(g, 0.0)) / 2**20)
    for g, (_, uuid, _, _) in sorted(labels.items()):
        add("DCGM_FI_DEV_XID_ERRORS", g, last_xid.get(uuid, 0))
    return list(families.values())
