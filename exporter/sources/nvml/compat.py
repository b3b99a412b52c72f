"""The nvml source's dcgm-exporter named families (``dcgm_compat_names``), made from its own readings.

Each row of :mod:`exporter.catalog.dcgm_compat` is fed by the catalog reading it names; FB_FREE is
computed from total, used and reserved memory, and XID_ERRORS from the XID watcher. The families
and their labels are :mod:`exporter.sources.dcgm_exporter_names`' (shared with the dcgm source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.catalog.dcgm_compat import FIELDS, CompatField
from exporter.snapshot import Family
from exporter.sources.dcgm_exporter_names import CompatFamilies, GpuIdentity

Sample = tuple[str, tuple[str, ...], float]

# (our metric, label values after gpu) -> the compat fields it feeds.
_BY_READING: dict[tuple[str, tuple[str, ...]], list[CompatField]] = {}
for _field in FIELDS:
    if _field.reading[0]:
        _BY_READING.setdefault(_field.reading, []).append(_field)
_FB_FREE = next(field for field in FIELDS if field.legacy == "DCGM_FI_DEV_FB_FREE")
_XID = next(field for field in FIELDS if field.legacy == "DCGM_FI_DEV_XID_ERRORS")


def dcgm_compat_families(samples: list[Sample], gpus: Mapping[str, Any], last_xid: Mapping[str, int],
                         generation: str = "pre-4.9", hostname: str = "", driver: str = "") -> list[Family]:
    """The nvml source's dcgm-exporter families of ``generation`` for the GPUs in ``samples``.

    ``gpus`` maps UUID to an object with ``index`` and ``state.caps`` (``name``, ``pci_bus_id``: the
    source's GPU entries); ``last_xid`` maps UUID to the most recent XID code.
    """
    identities = {str(gpu.index): GpuIdentity(str(gpu.index), uuid, gpu.state.caps.pci_bus_id, gpu.state.caps.name,
                                              driver)
                  for uuid, gpu in gpus.items() if gpu.state is not None}
    out = CompatFamilies(generation, hostname)

    def add(field: CompatField, g: str, value: float) -> None:
        if g in identities:
            out.add(field, identities[g], value * field.scale(generation))

    used: dict[str, float] = {}
    total: dict[str, float] = {}
    reserved: dict[str, float] = {}
    for metric, values, value in samples:
        g, rest = values[0], values[1:]
        for field in _BY_READING.get((metric, rest), ()):
            add(field, g, value)
        if metric == "blackwell_gpu_memory_used_bytes":
            used[g] = value
        elif metric == "blackwell_gpu_memory_total_bytes":
            total[g] = value
        elif metric == "blackwell_gpu_memory_reserved_bytes":
            reserved[g] = value
    for g in sorted(used.keys() & total.keys()):  # DCGM's FB_FREE (251) leaves out the reserve, as FB_USED does
        add(_FB_FREE, g, total[g] - used[g] - reserved.get(g, 0.0))
    for g, gpu in sorted(identities.items()):
        add(_XID, g, last_xid.get(gpu.uuid, 0))
    return out.families()
