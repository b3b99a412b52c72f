"""The optional ``dcgm`` source: the same GPU catalog metrics, read through DCGM field ids.

For sites that already run ``nv-hostengine``. DCGM's Python bindings are not on PyPI: they ship
with DCGM under ``/usr/share/datacenter-gpu-manager-4/bindings/python3`` and are imported from
``bindings_path`` only when this source is enabled. A missing installation is a clear probe error
(the source shows down with reason ``import``), never a crash. Fields are keyed on their numeric
ids because DCGM 4.6 renamed many of them; the ids are stable.

NVML stays the default (``sources.nvml``); this source covers the device-level metrics. NVLink
per-link counters, GPM per-link rates and XID counting stay with the nvml source.

``blackwell_gpu_up`` follows what DCGM says about the GPU, not merely that DCGM lists it: 0 when
its last XID (field 230) is 79 (fallen off the bus), when every per-cycle reading DCGM holds for it
is the plain blank DCGM stores for a call that failed (not "not supported"), and for a GPU DCGM
listed earlier in this process and no longer does.

With ``dcgm_compat_names`` it also emits dcgm-exporter's names of the chosen generation (the rows of
:mod:`exporter.catalog.dcgm_compat`, shared with the nvml source), each from the DCGM field
dcgm-exporter reads for it, so a value DCGM leaves blank is missing here as it is there.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from pydantic import Field, field_validator

from exporter.catalog.dcgm_compat import DRIVER_VERSION_ID
from exporter.catalog.dcgm_compat import FIELDS as COMPAT_FIELDS
from exporter.snapshot import Family
from exporter.sources.base import PollError, Source, SourceConfig
from exporter.sources.nvml.compat import CompatFamilies, GpuIdentity, exporter_hostname, parse_generation
from exporter.sources.nvml.fields import CLOCK_EVENT_BITS

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
# DCGM_FI_DEV_CLOCKS_EVENT_REASONS bitmask; bits as in nvml.h.
CLOCK_EVENT_REASONS = 112
XID_ERRORS = 230  # DCGM_FI_DEV_XID_ERRORS: the last XID code
XID_FALLEN_OFF_THE_BUS = 79
# Readings DCGM refreshes every cycle for a GPU that answers: clocks, temperature, power, utilization, FB used.
LIVE_FIELDS = (100, 101, 150, 155, 203, 204, 252)
# dcgmvalue.py: each type's blank sentinel; the next three mean not found, not supported, no permission.
_INT32_BLANK, _INT64_BLANK, _FP64_BLANK = 0x7FFFFFF0, 0x7FFFFFFFFFFFFFF0, 140737488355328.0
def is_failed_read(value: Any) -> bool:
    """The plain blank DCGM stores when the driver call failed (a lost GPU), as opposed to the
    not-found / not-supported / not-permissioned sentinels that follow it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value in (_INT32_BLANK, _INT64_BLANK, _FP64_BLANK)


def is_blank(value: Any) -> bool:
    """DCGM marks "no value" with sentinels near the top of each type's range (dcgmvalue.py)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0x7FFFFFF0 <= value <= 0x7FFFFFFF or value >= 0x7FFFFFFFFFFFFFF0
    if isinstance(value, float):
        return value >= 140737488355328.0  # DCGM_FP64_BLANK
    if isinstance(value, str):
        return value.startswith("<<<") or not value
    return False


class FieldReader(Protocol):
    """What the source needs from DCGM: latest values per GPU id, keyed by field id."""

    def read(self) -> Mapping[int, Mapping[int, Any]]: ...

    def close(self) -> None: ...


class DcgmReaderAdapter:
    """Wraps the bindings' ``DcgmReader`` (which connects to nv-hostengine and watches the fields)."""

    def __init__(self, bindings_path: str, hostname: str, field_ids: list[int], update_frequency_us: int) -> None:
        if bindings_path and bindings_path not in sys.path:
            sys.path.append(bindings_path)
        module = importlib.import_module("DcgmReader")
        self._reader = module.DcgmReader(fieldIds=field_ids, hostname=hostname, updateFrequency=update_frequency_us)

    def read(self) -> Mapping[int, Mapping[int, Any]]:
        return self._reader.GetLatestGpuValuesAsFieldIdDict()

    def close(self) -> None:
        self._reader.Shutdown()


class DcgmConfig(SourceConfig):
    bindings_path: str = Field(DEFAULT_BINDINGS, description="folder holding DCGM's Python bindings")
    hostname: str = Field("localhost", description="nv-hostengine to connect to")
    dcgm_compat_names: bool | str = Field(
        False, description="also emit dcgm-exporter's default DCGM_FI_* names and labels of one generation, as "
        "sources.nvml.dcgm_compat_names does: \"pre-4.6\", \"pre-4.9\" (true means this), \"4.9\"")

    @field_validator("dcgm_compat_names", mode="before")
    @classmethod
    def _known_generation(cls, value: object) -> bool | str:
        return parse_generation(value) or False


class DcgmSource(Source):
    name: ClassVar[str] = "dcgm"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = DcgmConfig
    config: DcgmConfig

    def __init__(self, config: DcgmConfig,
                 reader_factory: Callable[[list[int]], FieldReader] | None = None) -> None:
        """``reader_factory`` connects to DCGM and watches the field ids it is given."""
        super().__init__(config)
        self._factory = reader_factory or self._real_reader
        self._reader: FieldReader | None = None
        self._seen: dict[int, tuple[str, str]] = {}  # DCGM GPU id -> (gpu label, uuid) listed before
        self._down: list[str] = []
        self._hostname = exporter_hostname()

    def _field_ids(self) -> list[int]:
        """Every DCGM field this source watches under its configuration."""
        ids = [NAME, UUID, PCI_BUSID, VBIOS, NVML_INDEX, CLOCK_EVENT_REASONS, XID_ERRORS, *FIELDS]
        if self.config.dcgm_compat_names:
            ids += [DRIVER_VERSION_ID, *(field.legacy_id for field in COMPAT_FIELDS)]
        return list(dict.fromkeys(ids))

    def _real_reader(self, field_ids: list[int]) -> FieldReader:
        return DcgmReaderAdapter(self.config.bindings_path, self.config.hostname, field_ids,
                                 int(self.config.interval * 1e6))

    def probe(self) -> None:
        try:
            self._reader = self._factory(self._field_ids())
        except ImportError as exc:
            raise PollError(f"DCGM Python bindings not found under {self.config.bindings_path} ({exc}); install "
                            "DCGM or set sources.dcgm.bindings_path", "import") from None
        except Exception as exc:  # noqa: BLE001 - the bindings raise their own DCGMError classes
            raise PollError(f"cannot connect to DCGM at {self.config.hostname}: {exc}", "init") from None

    def poll(self) -> list[Family]:
        if self._reader is None:
            raise PollError("DCGM reader is not connected", "init")
        try:
            values = self._reader.read()
        except Exception as exc:  # noqa: BLE001 - see probe
            raise PollError(f"DCGM read failed: {exc}", "error") from None
        families: dict[str, Family] = {}

        def add(metric: str, labels: tuple[str, ...], value: float) -> None:
            families.setdefault(metric, Family(metric)).add(labels, value)

        generation = self.config.dcgm_compat_names
        compat = CompatFamilies(str(generation), self._hostname) if generation else None
        down: list[str] = []
        for gpu_id, fields in sorted(values.items()):
            index = fields.get(NVML_INDEX)
            g = str(gpu_id if is_blank(index) else int(index))
            uuid = fields.get(UUID)
            uuid = self._seen.get(gpu_id, ("", ""))[1] if is_blank(uuid) else str(uuid)
            self._seen[gpu_id] = (g, uuid)
            why = _why_down(fields)
            add("blackwell_gpu_up", (g, uuid), 0 if why else 1)
            if why:
                down.append(f"GPU {g} ({uuid}): {why}")
                continue
            _add_readings(add, g, uuid, fields)
            if compat is not None:
                _add_compat(compat, GpuIdentity(g, uuid, _text(fields.get(PCI_BUSID)), _text(fields.get(NAME)),
                                                _text(fields.get(DRIVER_VERSION_ID))), fields)
        for gpu_id, (g, uuid) in sorted(self._seen.items()):
            if gpu_id not in values:
                add("blackwell_gpu_up", (g, uuid), 0)
                down.append(f"GPU {g} ({uuid}): DCGM no longer lists it")
        self._down = down
        return [*families.values(), *(compat.families() if compat is not None else ())]

    def not_ready(self) -> list[str]:
        return list(self._down)

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.debug("dcgm: closing the reader", exc_info=True)
            self._reader = None


def _add_readings(add: Callable[[str, tuple[str, ...], float], None], g: str, uuid: str,
                  fields: Mapping[int, Any]) -> None:
    """One answering GPU's catalog series from its DCGM values; blank values are left out."""
    add("blackwell_gpu_info", (g, uuid, _text(fields.get(NAME)), _text(fields.get(PCI_BUSID)), "", "", "",
                               _text(fields.get(VBIOS)), ""), 1)
    for field_id, (metric, labels, scale) in FIELDS.items():
        value = fields.get(field_id)
        if not is_blank(value):
            add(metric, (g, *labels), float(value) * scale)
    mask = fields.get(CLOCK_EVENT_REASONS)
    if not is_blank(mask):
        for bit, reason in CLOCK_EVENT_BITS.items():  # DCGM reports NVML's clock-event bitmask
            add("blackwell_gpu_clock_event_active", (g, reason), int(bool(int(mask) & bit)))


def _add_compat(compat: CompatFamilies, gpu: GpuIdentity, fields: Mapping[int, Any]) -> None:
    """dcgm-exporter's series for one GPU, each from the DCGM field dcgm-exporter reads for its pre-4.9
    name (in that field's unit, converted for 4.9); a blank value is left out, as dcgm-exporter does."""
    for field in COMPAT_FIELDS:
        value = fields.get(field.legacy_id)
        if not is_blank(value):
            compat.add(field, gpu, float(value) * field.from_legacy(compat.generation))


def _why_down(fields: Mapping[int, Any]) -> str:
    """Why DCGM's values say this GPU does not answer; empty while it does."""
    xid = fields.get(XID_ERRORS)
    if not is_blank(xid) and int(xid) == XID_FALLEN_OFF_THE_BUS:
        return "last XID 79 (fallen off the bus)"
    live = [fields[field_id] for field_id in LIVE_FIELDS if field_id in fields]
    if live and all(is_failed_read(value) for value in live):
        return "every reading DCGM holds for it is blank (the driver did not answer)"
    return ""


def _text(value: Any) -> str:
    return "" if is_blank(value) else str(value)
