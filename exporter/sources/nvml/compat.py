"""dcgm-exporter's metric names and labels, for the nvml and the dcgm source.

With ``dcgm_compat_names`` set, a source also emits ``DCGM_FI_DEV_GPU_UTIL`` (or, for
dcgm-exporter 4.9 and later, ``DCGM_FI_DEV_GPU_UTIL_RATIO``) and the other fields of
dcgm-exporter's default counters, in the units of the chosen generation and with its labels
``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` (before 4.6) or
``hostname``, and the driver version (``DCGM_FI_DRIVER_VERSION``, from 4.9
``DCGM_FI_SYSTEM_DRIVER_VERSION``), so dashboards and alerts written for that dcgm-exporter keep
working when this sidecar replaces it. ``device`` is ``nvidia<index>`` (dcgm-exporter uses the
device minor number, which equals the index on standard installs). The names, ids and scales are
the rows of :mod:`exporter.catalog.dcgm_compat`; :class:`CompatFamilies` turns values into families
for both sources, the nvml source through :func:`dcgm_compat_families` from its readings, the dcgm
source from the DCGM fields dcgm-exporter itself reads.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from typing import Any

from exporter.catalog.dcgm_compat import FIELDS, GENERATIONS, PRE_4_6_LABELS, CompatField
from exporter.snapshot import Family

Sample = tuple[str, tuple[str, ...], float]

# (our metric, label values after gpu) -> the compat fields it feeds.
_BY_READING: dict[tuple[str, tuple[str, ...]], list[CompatField]] = {}
for _field in FIELDS:
    if _field.reading[0]:
        _BY_READING.setdefault(_field.reading, []).append(_field)
_FB_FREE = next(field for field in FIELDS if field.legacy == "DCGM_FI_DEV_FB_FREE")
_XID = next(field for field in FIELDS if field.legacy == "DCGM_FI_DEV_XID_ERRORS")


def parse_generation(value: Any) -> str | None:
    """The generation a ``dcgm_compat_names`` setting names; None for off.

    ``true`` keeps its meaning from before generations existed: dcgm-exporter's pre-4.9 names.
    """
    if value is None or value is False:
        return None
    if value is True:
        return "pre-4.9"
    if isinstance(value, str) and value in GENERATIONS:
        return value
    raise ValueError(f"dcgm_compat_names is {value!r}; use false, true (= \"pre-4.9\"), or one of "
                     + ", ".join(f'"{g}"' for g in GENERATIONS))


def exporter_hostname() -> str:
    """The host name dcgm-exporter would put in its hostname label: ``NODE_NAME`` (set by its
    Kubernetes manifests) when present, else the system host name."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


@dataclasses.dataclass(frozen=True)
class GpuIdentity:
    """What dcgm-exporter labels a GPU's series with, besides the host name."""

    gpu: str
    uuid: str
    pci_bus_id: str
    model: str
    driver: str


class CompatFamilies:
    """dcgm-exporter named families of one generation, filled field by field and GPU by GPU."""

    def __init__(self, generation: str, hostname: str) -> None:
        self.generation = generation
        self._hostname = hostname
        self._families: dict[str, Family] = {}

    def add(self, field: CompatField, gpu: GpuIdentity, value: float) -> None:
        """``value`` is already in the field's unit of this generation (see ``CompatField.scale``)."""
        name = field.name(self.generation)
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _family(name, self.generation)
        family.add((gpu.gpu, gpu.uuid, gpu.pci_bus_id, f"nvidia{gpu.gpu}", gpu.model, self._hostname, gpu.driver),
                   value)

    def families(self) -> list[Family]:
        return list(self._families.values())


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


def _family(name: str, generation: str) -> Family:
    """A family under the label names of ``generation``: the catalog declares the 4.6+ ``hostname``;
    dcgm-exporter before 4.6 spelled it ``Hostname`` (same position, same value)."""
    family = Family(name)
    if generation == "pre-4.6":
        family.metric = dataclasses.replace(family.metric, labels=PRE_4_6_LABELS)
    return family
