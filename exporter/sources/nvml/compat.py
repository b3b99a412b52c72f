"""dcgm-exporter's metric names, made from the same readings as our own names.

With ``dcgm_compat_names`` set, the nvml source also emits ``DCGM_FI_DEV_GPU_UTIL`` (or, for
dcgm-exporter 4.9 and later, ``DCGM_FI_DEV_GPU_UTIL_RATIO``) and the other fields of
dcgm-exporter's default counters, in the units of the chosen generation and with its labels
``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` (before 4.6) or
``hostname``, and the driver version (``DCGM_FI_DRIVER_VERSION``, from 4.9
``DCGM_FI_SYSTEM_DRIVER_VERSION``), so dashboards and alerts written for that dcgm-exporter keep
working when this sidecar replaces it. ``device`` is ``nvidia<index>`` (dcgm-exporter uses the
device minor number, which equals the index on standard installs). The names and scales are the
rows of :mod:`exporter.catalog.dcgm_compat`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from typing import Any

from exporter.catalog import dcgm_compat
from exporter.catalog.dcgm_compat import FIELDS, GENERATIONS, PRE_4_6_LABELS
from exporter.snapshot import Family

Sample = tuple[str, tuple[str, ...], float]

# (our metric, label values after gpu) -> the compat fields it feeds.
_BY_READING: dict[tuple[str, tuple[str, ...]], list[dcgm_compat.CompatField]] = {}
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


def dcgm_compat_families(samples: list[Sample], gpus: Mapping[str, Any], last_xid: Mapping[str, int],
                         generation: str = "pre-4.9", hostname: str = "", driver: str = "") -> list[Family]:
    """dcgm-exporter named families of ``generation`` for the GPUs in ``samples``.

    ``gpus`` maps UUID to an object with ``index`` and ``state.caps`` (``name``, ``pci_bus_id``: the
    source's GPU entries); ``last_xid`` maps UUID to the most recent XID code.
    """
    labels: dict[str, tuple[str, ...]] = {}
    for uuid, gpu in gpus.items():
        if gpu.state is not None:
            g = str(gpu.index)
            caps = gpu.state.caps
            labels[g] = (g, uuid, caps.pci_bus_id, f"nvidia{g}", caps.name, hostname, driver)
    families: dict[str, Family] = {}

    def add(field: dcgm_compat.CompatField, g: str, value: float) -> None:
        if g in labels:
            name = field.name(generation)
            family = families.get(name)
            if family is None:
                family = families[name] = _family(name, generation)
            family.add(labels[g], value * field.scale(generation))

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
    for g, row in sorted(labels.items()):
        add(_XID, g, last_xid.get(row[1], 0))
    return list(families.values())


def _family(name: str, generation: str) -> Family:
    """A family under the label names of ``generation``: the catalog declares the 4.6+ ``hostname``;
    dcgm-exporter before 4.6 spelled it ``Hostname`` (same position, same value)."""
    family = Family(name)
    if generation == "pre-4.6":
        family.metric = dataclasses.replace(family.metric, labels=PRE_4_6_LABELS)
    return family
