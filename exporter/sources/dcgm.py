"""The optional ``dcgm`` source: the same GPU catalog metrics, read through DCGM field ids.

For sites that already run ``nv-hostengine``. DCGM's Python bindings are not on PyPI: they ship
with DCGM under ``/usr/share/datacenter-gpu-manager-4/bindings/python3`` and are imported from
``bindings_path`` only when this source is enabled. A missing installation is a clear probe error
(the source shows down with reason ``import``), never a crash. Fields are keyed on their numeric
ids because DCGM 4.6 renamed many of them; the ids are stable.

NVML stays the default (``sources.nvml``); this source covers the device-level metrics. NVLink
per-link counters, GPM per-link rates and XID counting stay with the nvml source.

Values are read with ``dcgm_agent.dcgmGetLatestValues`` (see :class:`LatestValues` for why not with
``DcgmReader``), so blanks and per-value statuses reach this module. ``blackwell_gpu_up`` follows what DCGM
says about the GPU, not merely that DCGM lists it: 0 when its last XID (field 230) is 79 (fallen off the
bus), when every per-cycle reading DCGM holds for it is the plain blank DCGM stores for a call that failed
(or an error status; not "not supported"), and for a GPU DCGM listed earlier in this process and no longer
does. A dead nv-hostengine fails the poll (reason ``unreachable``), so the scheduler serves the last good
snapshot meanwhile; the next poll connects again and watches the fields anew.

With ``dcgm_compat_names`` it also emits dcgm-exporter's names of the chosen generation (the rows of
:mod:`exporter.catalog.dcgm_compat`, shared with the nvml source), each from the DCGM field
dcgm-exporter reads for it, so a value DCGM leaves blank is missing here as it is there.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

from pydantic import Field

from exporter.catalog.clock_events import CLOCK_EVENT_BITS
from exporter.catalog.dcgm_compat import DRIVER_VERSION_ID
from exporter.catalog.dcgm_compat import FIELDS as COMPAT_FIELDS
from exporter.snapshot import Family
from exporter.sources.base import PollError, Source, SourceConfig
from exporter.sources.dcgm_exporter_names import (
    CompatFamilies,
    CompatGeneration,
    GpuIdentity,
    exporter_hostname,
)

log = logging.getLogger(__name__)

DEFAULT_BINDINGS = "/usr/share/datacenter-gpu-manager-4/bindings/python3"

# Identity fields (DCGM_FI_DEV_NAME, UUID, PCI_BUSID, VBIOS_VERSION, NVML_INDEX).
NAME, UUID, PCI_BUSID, VBIOS, NVML_INDEX = 50, 54, 57, 85, 52

# field id -> (metric, label values after gpu, scale from DCGM's unit to ours)
FIELDS: dict[int, tuple[str, tuple[str, ...], float]] = {
    100: ("blackwell_gpu_sm_clock_hertz", (), 1e6),  # SM_CLOCK, MHz
    101: ("blackwell_gpu_memory_clock_hertz", (), 1e6),  # MEM_CLOCK, MHz
    140: ("blackwell_gpu_memory_temperature_celsius", (), 1.0),
    150: ("blackwell_gpu_temperature_celsius", (), 1.0),
    155: ("blackwell_gpu_power_watts", (), 1.0),
    156: ("blackwell_gpu_energy_joules_total", (), 1e-3),  # mJ
    164: ("blackwell_gpu_power_limit_watts", (), 1.0),  # ENFORCED_POWER_LIMIT
    190: ("blackwell_gpu_performance_state", (), 1.0),
    202: ("blackwell_gpu_pcie_replay_total", (), 1.0),
    203: ("blackwell_gpu_utilization_ratio", (), 0.01),
    204: ("blackwell_gpu_memory_utilization_ratio", (), 0.01),
    237: ("blackwell_gpu_pcie_link_generation", (), 1.0),
    238: ("blackwell_gpu_pcie_link_width", (), 1.0),
    250: ("blackwell_gpu_memory_total_bytes", (), 2.0**20),  # MiB
    252: ("blackwell_gpu_memory_used_bytes", (), 2.0**20),  # without the reserve, as nvidia-smi's Used
    253: ("blackwell_gpu_memory_reserved_bytes", (), 2.0**20),
    310: ("blackwell_gpu_ecc_errors_total", ("corrected", "volatile"), 1.0),
    311: ("blackwell_gpu_ecc_errors_total", ("uncorrected", "volatile"), 1.0),
    312: ("blackwell_gpu_ecc_errors_total", ("corrected", "aggregate"), 1.0),
    313: ("blackwell_gpu_ecc_errors_total", ("uncorrected", "aggregate"), 1.0),
    393: ("blackwell_gpu_remapped_rows_total", ("uncorrectable",), 1.0),
    394: ("blackwell_gpu_remapped_rows_total", ("correctable",), 1.0),
    395: ("blackwell_gpu_remapped_rows_failure", (), 1.0),
    396: ("blackwell_gpu_remapped_rows_pending", (), 1.0),
    286: ("blackwell_c2c_link_up", (), 1.0),  # C2C_LINK_STATUS
    # Profiling fields (DCGM's own sampler; ratios 0-1 already).
    1002: ("blackwell_gpu_sm_active_ratio", (), 1.0),
    1003: ("blackwell_gpu_sm_occupancy_ratio", (), 1.0),
    1004: ("blackwell_gpu_tensor_active_ratio", ("any",), 1.0),
    1005: ("blackwell_gpu_dram_bandwidth_utilization_ratio", (), 1.0),
}
# DCGM_FI_DEV_CLOCKS_EVENT_REASONS bitmask; bits as in nvml.h (exporter.catalog.clock_events).
CLOCK_EVENT_REASONS = 112
XID_ERRORS = 230  # DCGM_FI_DEV_XID_ERRORS: the last XID code
XID_FALLEN_OFF_THE_BUS = 79
# Readings DCGM refreshes every cycle for a GPU that answers: clocks, temperature, power, utilization, FB used.
LIVE_FIELDS = (100, 101, 150, 155, 203, 204, 252)
BINDING_MODULES = ("pydcgm", "dcgm_agent", "dcgm_structs", "dcgm_fields", "dcgmvalue")
# Per-value statuses that say a value does not exist rather than that reading it failed.
_ABSENT_STATUSES = ("NOT_SUPPORTED", "NO_PERMISSION", "NOT_WATCHED", "NO_DATA", "FIELD_UNSUPPORTED_BY_API")


@dataclass(frozen=True)
class Reading:
    """One latest value as DCGM holds it. ``value`` is None where DCGM has none (one of its blank sentinels or
    a non-OK per-value status); ``failed`` says the driver call behind it failed: the plain blank DCGM stores
    then (not its not-found / not-supported / not-permissioned sentinels), or an error status."""

    value: float | int | str | None
    failed: bool = False


def load_bindings(path: str) -> SimpleNamespace:
    """DCGM's own Python modules from ``path``; ImportError when they are not there."""
    if path and path not in sys.path:
        sys.path.append(path)
    return SimpleNamespace(**{name: importlib.import_module(name) for name in BINDING_MODULES})


class LatestValues:
    """Latest values through ``dcgm_agent.dcgmGetLatestValues``, connected as ``DcgmReader`` connects.

    Not through ``DcgmReader.GetLatestGpuValuesAsFieldIdDict``: that skips every blank value (so a GPU that
    fell off the bus arrives without its live fields) and answers ``{}`` when nv-hostengine is gone (it logs
    DCGM_ST_CONNECTION_NOT_VALID and swallows it). Here each value keeps its blank and status, and a lost
    connection raises; the next ``read`` connects again.
    """

    def __init__(self, bindings: Any, hostname: str, field_ids: list[int], update_frequency_us: int,
                 max_keep_age_s: float) -> None:
        self._dcgm = bindings
        self._hostname, self._field_ids = hostname, field_ids
        self._watch = (update_frequency_us, max_keep_age_s)
        self._handle: Any = None
        self._field_group: Any = None
        self._batch: dict[int, dict[int, Reading]] = {}
        self._callback = bindings.dcgm_agent.dcgmFieldValueEnumeration_f(self._collect)  # kept alive for C
        structs = bindings.dcgm_structs
        self._absent = {getattr(structs, f"DCGM_ST_{name}") for name in _ABSENT_STATUSES
                        if hasattr(structs, f"DCGM_ST_{name}")}

    def connect(self) -> None:
        """Connect to nv-hostengine and watch the fields; DCGMError when it does not answer."""
        dcgm = self._dcgm
        handle = dcgm.pydcgm.DcgmHandle(ipAddress=self._hostname, opMode=dcgm.dcgm_structs.DCGM_OPERATION_MODE_AUTO)
        try:
            # One name per connection: a field group left behind by a connection that died cannot clash.
            name = f"blackwell_exporter_{os.getpid()}_{id(handle)}"
            group = dcgm.pydcgm.DcgmFieldGroup(handle, name=name, fieldIds=self._field_ids)
            all_gpus = dcgm.dcgm_structs.DCGM_GROUP_ALL_GPUS
            dcgm.dcgm_structs._dcgmCheckReturn(
                dcgm.dcgm_agent.dcgmWatchFields(handle.handle, all_gpus, group.fieldGroupId, *self._watch, 0))
            dcgm.dcgm_structs._dcgmCheckReturn(dcgm.dcgm_agent.dcgmUpdateAllFields(handle.handle, 1))
        except BaseException:
            handle.Shutdown()
            raise
        self._handle, self._field_group = handle, group

    def read(self) -> Mapping[int, Mapping[int, Reading]]:
        """The latest readings per DCGM GPU id, keyed by field id; connects first where not connected."""
        dcgm = self._dcgm
        if self._handle is None:
            self.connect()
        self._batch = {}
        try:
            dcgm.dcgm_agent.dcgmGetLatestValues(self._handle.handle, dcgm.dcgm_structs.DCGM_GROUP_ALL_GPUS,
                                                self._field_group.fieldGroupId, self._callback, self._batch)
        except dcgm.dcgm_structs.DCGMError as exc:
            if exc.value == dcgm.dcgm_structs.DCGM_ST_CONNECTION_NOT_VALID:
                self.close()
            raise
        return self._batch

    def _collect(self, gpu_id: int, values: Any, count: int, user_data: Any) -> int:
        """The enumeration callback DCGM calls per GPU; must not raise (ctypes would only print it)."""
        readings = self._batch.setdefault(int(gpu_id), {})
        for raw in values[0:count]:
            try:
                readings[int(raw.fieldId)] = self._decode(raw)
            except Exception:  # noqa: BLE001 - a value this source cannot decode is left out, not fatal
                log.debug("dcgm: cannot decode field %s", raw.fieldId, exc_info=True)
        return 0

    def _decode(self, raw: Any) -> Reading:
        """One ``c_dcgmFieldValue_v1``, with the bindings' own sentinels and blank tests (dcgmvalue.py)."""
        dcgm = self._dcgm
        if raw.status != dcgm.dcgm_structs.DCGM_ST_OK:
            return Reading(None, failed=raw.status not in self._absent)
        kind, fields, value_module = chr(raw.fieldType), dcgm.dcgm_fields, dcgm.dcgmvalue
        if kind == fields.DCGM_FT_DOUBLE:
            number = float(raw.value.dbl)
            blank, plain = value_module.DCGM_FP64_IS_BLANK(number), value_module.DCGM_FP64_BLANK
            return Reading(None, number == plain) if blank else Reading(number)
        if kind in (fields.DCGM_FT_INT64, fields.DCGM_FT_TIMESTAMP):
            integer = int(raw.value.i64)
            blank, plain = value_module.DCGM_INT64_IS_BLANK(integer), value_module.DCGM_INT64_BLANK
            return Reading(None, integer == plain) if blank else Reading(integer)
        if kind == fields.DCGM_FT_STRING:
            text = raw.value.str
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            if value_module.DCGM_STR_IS_BLANK(text):
                return Reading(None, text == value_module.DCGM_STR_BLANK)
            return Reading(text)
        return Reading(None)  # binary values: none of the watched fields

    def close(self) -> None:
        """Drop the field group and the connection; on a dead connection both fail, and are gone anyway."""
        for release in (getattr(self._field_group, "Delete", None), getattr(self._handle, "Shutdown", None)):
            if release is not None:
                try:
                    release()
                except self._dcgm.dcgm_structs.DCGMError:
                    log.debug("dcgm: releasing a dead connection", exc_info=True)
        self._handle = self._field_group = None


class DcgmConfig(SourceConfig):
    bindings_path: str = Field(DEFAULT_BINDINGS, description="folder holding DCGM's Python bindings")
    hostname: str = Field("localhost", description="nv-hostengine to connect to")
    dcgm_compat_names: CompatGeneration = Field(
        False, description="also emit dcgm-exporter's default DCGM_FI_* names and labels of one generation, as "
        "sources.nvml.dcgm_compat_names does: \"pre-4.6\", \"pre-4.9\" (true means this), \"4.9\"")


class DcgmSource(Source):
    name: ClassVar[str] = "dcgm"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = DcgmConfig
    config: DcgmConfig

    def __init__(self, config: DcgmConfig, bindings: Any = None) -> None:
        """``bindings``: DCGM's Python modules (``pydcgm``, ``dcgm_agent``, ``dcgm_structs``, ``dcgm_fields``,
        ``dcgmvalue``) as attributes; by default imported from ``bindings_path`` at the first probe."""
        super().__init__(config)
        self._bindings = bindings
        self._reader: LatestValues | None = None
        self._seen: dict[int, tuple[str, str]] = {}  # DCGM GPU id -> (gpu label, uuid) listed before
        self._down: list[str] = []
        self._hostname = exporter_hostname()

    def _field_ids(self) -> list[int]:
        """Every DCGM field this source watches under its configuration."""
        ids = [NAME, UUID, PCI_BUSID, VBIOS, NVML_INDEX, CLOCK_EVENT_REASONS, XID_ERRORS, *FIELDS]
        if self.config.dcgm_compat_names:
            ids += [DRIVER_VERSION_ID, *(field.legacy_id for field in COMPAT_FIELDS)]
        return list(dict.fromkeys(ids))

    def probe(self) -> None:
        self.close()
        try:
            bindings = self._bindings or load_bindings(self.config.bindings_path)
        except ImportError as exc:
            raise PollError(f"DCGM Python bindings not found under {self.config.bindings_path} ({exc}); install "
                            "DCGM or set sources.dcgm.bindings_path", "import") from None
        reader = LatestValues(bindings, self.config.hostname, self._field_ids(), int(self.config.interval * 1e6),
                              max(60.0, 4 * self.config.interval))
        try:
            reader.connect()
        except Exception as exc:  # noqa: BLE001 - the bindings raise their own DCGMError classes
            raise PollError(f"cannot connect to nv-hostengine at {self.config.hostname}: {exc}", "init") from None
        self._bindings, self._reader = bindings, reader

    def poll(self) -> list[Family]:
        if self._reader is None:
            raise PollError("DCGM reader is not connected", "init")
        try:
            values = self._reader.read()
        except Exception as exc:  # noqa: BLE001 - see probe
            raise self._read_error(exc) from None
        families: dict[str, Family] = {}

        def add(metric: str, labels: tuple[str, ...], value: float) -> None:
            families.setdefault(metric, Family(metric)).add(labels, value)

        generation = self.config.dcgm_compat_names
        compat = CompatFamilies(str(generation), self._hostname) if generation else None
        down: list[str] = []
        for gpu_id, fields in sorted(values.items()):
            index = _value(fields, NVML_INDEX)
            g = str(gpu_id if index is None else int(index))
            uuid = _value(fields, UUID)
            uuid = self._seen.get(gpu_id, ("", ""))[1] if uuid is None else str(uuid)
            self._seen[gpu_id] = (g, uuid)
            why = _why_down(fields)
            add("blackwell_gpu_up", (g, uuid), 0 if why else 1)
            if why:
                down.append(f"GPU {g} ({uuid}): {why}")
                continue
            _add_readings(add, g, uuid, fields)
            if compat is not None:
                _add_compat(compat, GpuIdentity(g, uuid, _text(fields, PCI_BUSID), _text(fields, NAME),
                                                _text(fields, DRIVER_VERSION_ID)), fields)
        for gpu_id, (g, uuid) in sorted(self._seen.items()):
            if gpu_id not in values:
                add("blackwell_gpu_up", (g, uuid), 0)
                down.append(f"GPU {g} ({uuid}): DCGM no longer lists it")
        self._down = down
        return [*families.values(), *(compat.families() if compat is not None else ())]

    def _read_error(self, exc: Exception) -> PollError:
        """The PollError for a failed read: a dead host engine says so, and that the next poll reconnects."""
        structs = getattr(self._bindings, "dcgm_structs", None)
        if structs is not None and getattr(exc, "value", None) == structs.DCGM_ST_CONNECTION_NOT_VALID:
            return PollError(f"lost the connection to nv-hostengine at {self.config.hostname} ({exc}); is it "
                             "running? reconnecting at the next poll", "unreachable")
        return PollError(f"DCGM read failed: {exc}", "error")

    def not_ready(self) -> list[str]:
        return list(self._down)

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.debug("dcgm: closing the reader", exc_info=True)
            self._reader = None


def _value(fields: Mapping[int, Reading], field_id: int) -> float | int | str | None:
    reading = fields.get(field_id)
    return None if reading is None else reading.value


def _text(fields: Mapping[int, Reading], field_id: int) -> str:
    value = _value(fields, field_id)
    return "" if value is None else str(value)


def _add_readings(add: Callable[[str, tuple[str, ...], float], None], g: str, uuid: str,
                  fields: Mapping[int, Reading]) -> None:
    """One answering GPU's catalog series from its DCGM values; blank values are left out."""
    add("blackwell_gpu_info", (g, uuid, _text(fields, NAME), _text(fields, PCI_BUSID), "", "", "",
                               _text(fields, VBIOS), ""), 1)
    for field_id, (metric, labels, scale) in FIELDS.items():
        value = _value(fields, field_id)
        if value is not None:
            add(metric, (g, *labels), float(value) * scale)
    mask = _value(fields, CLOCK_EVENT_REASONS)
    if mask is not None:
        for bit, reason in CLOCK_EVENT_BITS.items():  # DCGM reports NVML's clock-event bitmask
            add("blackwell_gpu_clock_event_active", (g, reason), int(bool(int(mask) & bit)))


def _add_compat(compat: CompatFamilies, gpu: GpuIdentity, fields: Mapping[int, Reading]) -> None:
    """dcgm-exporter's series for one GPU, each from the DCGM field dcgm-exporter reads for its pre-4.9
    name (in that field's unit, converted for 4.9); a blank value is left out, as dcgm-exporter does."""
    for field in COMPAT_FIELDS:
        value = _value(fields, field.legacy_id)
        if value is not None:
            compat.add(field, gpu, float(value) * field.from_legacy(compat.generation))


def _why_down(fields: Mapping[int, Reading]) -> str:
    """Why DCGM's values say this GPU does not answer; empty while it does."""
    xid = _value(fields, XID_ERRORS)
    if xid is not None and int(xid) == XID_FALLEN_OFF_THE_BUS:
        return "last XID 79 (fallen off the bus)"
    live = [fields[field_id] for field_id in LIVE_FIELDS if field_id in fields]
    if live and all(reading.failed for reading in live):
        return "every reading DCGM holds for it is blank (the driver did not answer)"
    return ""
