"""dcgm-exporter's metric and label names, as families: what the nvml and the dcgm source share.

With ``dcgm_compat_names`` set, a source also emits ``DCGM_FI_DEV_GPU_UTIL`` (or, for
dcgm-exporter 4.9 and later, ``DCGM_FI_DEV_GPU_UTIL_RATIO``) and the other fields of
dcgm-exporter's default counters, in the units of the chosen generation and with its labels
``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` (before 4.6) or
``hostname``, and the driver version (``DCGM_FI_DRIVER_VERSION``, from 4.9
``DCGM_FI_SYSTEM_DRIVER_VERSION``), so dashboards and alerts written for that dcgm-exporter keep
working when this sidecar replaces it. ``device`` is ``nvidia<index>`` (dcgm-exporter uses the
device minor number, which equals the index on standard installs). The names, ids and scales are
the rows of :mod:`exporter.catalog.dcgm_compat`; :class:`CompatFamilies` turns values into families
for both sources: the nvml source from its readings (:mod:`exporter.sources.nvml.compat`), the
dcgm source from the DCGM fields dcgm-exporter itself reads.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Annotated, Any

from pydantic import BeforeValidator

from exporter.catalog.dcgm_compat import GENERATIONS, PRE_4_6_LABELS, CompatField
from exporter.snapshot import Family


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


# The type of a source's ``dcgm_compat_names`` setting: false, or the generation it names.
CompatGeneration = Annotated[bool | str, BeforeValidator(lambda value: parse_generation(value) or False)]


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


def _family(name: str, generation: str) -> Family:
    """A family under the label names of ``generation``: the catalog declares the 4.6+ ``hostname``;
    dcgm-exporter before 4.6 spelled it ``Hostname`` (same position, same value)."""
    family = Family(name)
    if generation == "pre-4.6":
        family.metric = dataclasses.replace(family.metric, labels=PRE_4_6_LABELS)
    return family
