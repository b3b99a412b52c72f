"""A :class:`Backend` that answers from a recording of real NVML, for tests and demos.

The recording is the JSON that ``tools/nvml_probe.py`` writes (``fixtures/nvml/h200x2/``): every
plain call's value or error per GPU, per-link state and legacy counters, every field unscoped
and scoped per link, GPM metrics idle and under load. Calls the recording lacks come from an
``overlay`` mapping (same shape as ``calls``); anything still missing answers FunctionNotFound,
as a driver older than the bindings would.

On top of the recording, tests inject what the hardware here cannot show: synthetic Blackwell
NVLink5 counters (:meth:`make_blackwell`), a GPU falling off the bus (:meth:`lose_gpu`), a call
that hangs (:meth:`hang`), XID events (:meth:`emit_xid`) and counters that change or reset
(:meth:`set_field`, :meth:`set_legacy`). ``calls`` counts every call by method name.

Latencies replay as virtual time, never as sleeps: every call adds its recorded duration to
``elapsed_us`` (plain calls and the legacy per-link counter: the recorded wall time; a field-values
call: :data:`FIELD_CALL_BASE_US` plus the driver's recorded per-field latency of each entry). Tests
compare the cost of two ways of reading the same GPU without waiting for it.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.sources.nvml.backend import (
    FUNCTION_NOT_FOUND,
    GPU_IS_LOST,
    INVALID_ARGUMENT,
    NOT_FOUND,
    NOT_SUPPORTED,
    SUCCESS,
    UNINITIALIZED,
    Backend,
    FieldValue,
    NvmlError,
    XidEvent,
)

_ERROR_CODES = {"NotSupported": NOT_SUPPORTED, "NoPermission": 4, "InvalidArgument": INVALID_ARGUMENT,
                "NotFound": NOT_FOUND, "Timeout": 10, "FunctionNotFound": FUNCTION_NOT_FOUND,
                "GpuIsLost": GPU_IS_LOST, "ResetRequired": 16, "Unknown": 999, "NoData": 21}
_LEGACY_NAMES = {0: "NVML_NVLINK_ERROR_DL_REPLAY", 1: "NVML_NVLINK_ERROR_DL_RECOVERY",
                 2: "NVML_NVLINK_ERROR_DL_CRC_FLIT", 3: "NVML_NVLINK_ERROR_DL_CRC_DATA",
                 4: "NVML_NVLINK_ERROR_DL_ECC_DATA"}

# Synthetic NVLink5 answers for a Blackwell GPU (ids 201-250), per link: plausible idle values.
BLACKWELL_LINK_VALUES: dict[int, int] = {
    201: 1_000_000, 202: 64_000_000, 203: 1_000_000, 204: 64_000_000,
    206: 0, 207: 0, 208: 0, 209: 0, 210: 0, 211: 0, 212: 0,
    213: 0, 214: 0, 215: 0, 219: 0, 221: 3,
    220: (1 << 8) | 15,  # EFFECTIVE_BER 1e-15
    222: (2 << 8) | 12,  # SYMBOL_BER 2e-12
    **{235 + n: 0 for n in range(16)},
}


# Fixed cost of one nvmlDeviceGetFieldValues call on top of its fields' own latencies. From the
# hardware report (2x H200, driver 580): 196 single-entry calls per GPU cost ~116 ms of which the
# fields' recorded latencies explain ~10 ms, i.e. ~0.54 ms per call.
FIELD_CALL_BASE_US = 540.0


def _name_tables() -> tuple[dict[int, list[str]], dict[int, str]]:
    """Field and GPM ids -> names, from the bindings that made the recording's names."""
    import pynvml

    fields: dict[int, list[str]] = {}
    gpm: dict[int, str] = {}
    for name in dir(pynvml):
        value = getattr(pynvml, name)
        if not isinstance(value, int):
            continue
        if name.startswith("NVML_FI_DEV_"):
            fields.setdefault(value, []).append(name)
        elif name.startswith("NVML_GPM_METRIC_") and name != "NVML_GPM_METRIC_MAX":
            gpm[value] = name
    return fields, gpm


@dataclass(frozen=True)
class ReplayHandle:
    index: int


def _error(text: str, call: str) -> NvmlError:
    # "NVMLError_NotSupported:Not Supported" -> NOT_SUPPORTED; a probe-tool mistake ("PY:...") was
    # never an NVML answer, so it replays as a call the driver does not have.
    if text.startswith("NVMLError_"):
        return NvmlError(_ERROR_CODES.get(text[len("NVMLError_"):].split(":", 1)[0], 999), call)
    return NvmlError(FUNCTION_NOT_FOUND, call)


class ReplayBackend(Backend):
    def __init__(self, recording: Mapping[str, Any], overlay: Mapping[str, Mapping[str, Any]] | None = None,
                 xid_wait_cap: float = 0.05) -> None:
        self._rec = recording
        self._devices = list(recording["devices"])
        self._overlay = overlay or {}
        self._field_names, self._gpm_names = _name_tables()
        self._initialised = False
        self._lost: set[int] = set()
        self._hangs: dict[tuple[int, str], threading.Event] = {}
        self._failures: dict[tuple[int, str | None], int] = {}
        self._fields: dict[tuple[int, int, int], FieldValue] = {}
        self._legacy: dict[tuple[int, int, int], int | None] = {}
        self._plain: dict[tuple[int, str], Any] = {}
        self._xids: queue.Queue[XidEvent] = queue.Queue()
        self._xid_wait_cap = xid_wait_cap
        self._lock = threading.Lock()
        self.phase = "idle"  # GPM answers: "idle" or "load"
        self.calls: Counter[str] = Counter()
        self.init_count = 0
        self.elapsed_us = 0.0

    # -- failure injection -------------------------------------------------------------------
    def lose_gpu(self, index: int) -> None:
        """The GPU falls off the bus: every call on it answers GpuIsLost, lookups NotFound, until
        :meth:`restore_gpu`."""
        self._lost.add(index)

    def restore_gpu(self, index: int) -> None:
        self._lost.discard(index)
        self._failures = {k: v for k, v in self._failures.items() if k[0] != index}

    def fail(self, index: int, method: str | None, code: int) -> None:
        """Calls of ``method`` (every method when None) on GPU ``index`` answer NVML error ``code``."""
        self._failures[(index, method)] = code

    def hang(self, index: int, method: str) -> threading.Event:
        """Calls of ``method`` on GPU ``index`` block until the returned event is set."""
        event = threading.Event()
        self._hangs[(index, method)] = event
        return event

    def unhang(self, index: int, method: str) -> None:
        """Let the hung calls of ``method`` on GPU ``index`` (and later ones) return."""
        event = self._hangs.pop((index, method), None)
        if event is not None:
            event.set()

    def emit_xid(self, index: int, xid: int) -> None:
        self._xids.put(XidEvent(self._devices[index]["calls"]["nvmlDeviceGetUUID"]["value"], xid))

    def set_field(self, index: int, field_id: int, value: int | float | None, scope: int = 0) -> None:
        """Answer ``field_id`` with ``value`` (None: NotSupported) from now on."""
        self._fields[(index, field_id, scope)] = FieldValue(SUCCESS, value) if value is not None else FieldValue(
            NOT_SUPPORTED)

    def set_legacy(self, index: int, link: int, counter: int, value: int | None) -> None:
        self._legacy[(index, link, counter)] = value

    def set_plain(self, index: int, method: str, value: Any) -> None:
        self._plain[(index, method)] = value

    def make_blackwell(self, index: int, name: str = "NVIDIA B200") -> None:
        """Turn GPU ``index`` into a Blackwell: NVLink5 COUNT_* fields answer, while the Hopper
        data-link fields 161-163 and the legacy per-link call answer NotSupported (nvml.h)."""
        self.set_plain(index, "architecture", 10)
        self.set_plain(index, "name", name)
        self.set_plain(index, "compute_capability", (10, 0))
        for link in range(self._link_count(index)):
            for field_id, value in BLACKWELL_LINK_VALUES.items():
                self.set_field(index, field_id, value, link)
            for field_id in (161, 162, 163):
                self.set_field(index, field_id, None, link)
            for counter in _LEGACY_NAMES:
                self.set_legacy(index, link, counter, None)

    # -- plumbing ----------------------------------------------------------------------------
    def _enter(self, method: str, handle: ReplayHandle | None = None) -> dict[str, Any] | None:
        with self._lock:
            self.calls[method] += 1
        if not self._initialised:
            raise NvmlError(UNINITIALIZED, method)
        if handle is None:
            return None
        event = self._hangs.get((handle.index, method))
        if event is not None:
            event.wait()
        if handle.index in self._lost:
            raise NvmlError(GPU_IS_LOST, method)
        code = self._failures.get((handle.index, method), self._failures.get((handle.index, None)))
        if code is not None:
            raise NvmlError(code, method)
        return self._devices[handle.index]

    def _spend(self, us: float) -> None:
        with self._lock:
            self.elapsed_us += us

    def _recorded(self, handle: ReplayHandle, method: str, key: str) -> Any:
        device = self._enter(method, handle)
        assert device is not None
        entry = device["calls"].get(key, device.get(key))
        if entry is None:
            entry = self._overlay.get(key, {}).get(str(handle.index))
        self._spend(float((entry or {}).get("us") or 0.0))
        if (handle.index, method) in self._plain:
            return self._plain[(handle.index, method)]
        if entry is None:
            raise NvmlError(FUNCTION_NOT_FOUND, key)
        if entry.get("err"):
            raise _error(entry["err"], key)
        return entry["value"]

    def _link_count(self, index: int) -> int:
        answer = self._devices[index]["fieldvalues_unscoped"].get("NVML_FI_DEV_NVLINK_LINK_COUNT", {})
        return int(answer.get("value") or 0) if answer.get("ret") == SUCCESS else 0

    # -- Backend -----------------------------------------------------------------------------
    def init(self) -> None:
        self.calls["init"] += 1
        self._initialised = True
        self.init_count += 1

    def shutdown(self) -> None:
        self._enter("shutdown")
        self._initialised = False

    def driver_version(self) -> str:
        self._enter("driver_version")
        return str(self._rec["driver"])

    def device_count(self) -> int:
        self._enter("device_count")
        return len(self._devices)

    def handle_by_index(self, index: int) -> ReplayHandle:
        self._enter("handle_by_index")
        if not 0 <= index < len(self._devices):
            raise NvmlError(INVALID_ARGUMENT, "nvmlDeviceGetHandleByIndex")
        return ReplayHandle(index)

    def handle_by_uuid(self, uuid: str) -> ReplayHandle:
        self._enter("handle_by_uuid")
        for i, device in enumerate(self._devices):
            if device["calls"]["nvmlDeviceGetUUID"]["value"] == uuid and i not in self._lost:
                return ReplayHandle(i)
        raise NvmlError(NOT_FOUND, "nvmlDeviceGetHandleByUUID")

    def index(self, handle: ReplayHandle) -> int:
        self._enter("index", handle)
        return handle.index

    def name(self, handle: ReplayHandle) -> str:
        return str(self._recorded(handle, "name", "nvmlDeviceGetName"))

    def uuid(self, handle: ReplayHandle) -> str:
        return str(self._recorded(handle, "uuid", "nvmlDeviceGetUUID"))

    def pci_bus_id(self, handle: ReplayHandle) -> str:
        return str(self._recorded(handle, "pci_bus_id", "nvmlDeviceGetPciInfo_v3")["busId"])

    def architecture(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "architecture", "nvmlDeviceGetArchitecture"))

    def compute_capability(self, handle: ReplayHandle) -> tuple[int, int]:
        major, minor = self._recorded(handle, "compute_capability", "nvmlDeviceGetCudaComputeCapability")
        return int(major), int(minor)

    def vbios_version(self, handle: ReplayHandle) -> str:
        return str(self._recorded(handle, "vbios_version", "nvmlDeviceGetVbiosVersion"))

    def module_id(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "module_id", "nvmlDeviceGetModuleId"))

    def max_clock_mhz(self, handle: ReplayHandle, clock: int) -> int:
        return int(self._recorded(handle, "max_clock_mhz", f"nvmlDeviceGetMaxClockInfo({clock},)"))

    def memory_bus_width(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "memory_bus_width", "nvmlDeviceGetMemoryBusWidth"))

    def c2c_enabled(self, handle: ReplayHandle) -> bool:
        return bool(self._recorded(handle, "c2c_enabled", "nvmlDeviceGetC2cModeInfoV")["isC2cEnabled"])

    def platform_info(self, handle: ReplayHandle) -> dict[str, str]:
        raw = self._recorded(handle, "platform_info", "nvmlDeviceGetPlatformInfo")

        def char(text: str) -> str:
            return str(ord(text[0])) if text else "0"

        return {"chassis_serial_number": raw["chassisSerialNumber"].split("\0", 1)[0],
                "slot_number": char(raw["slotNumber"]), "tray_index": char(raw["trayIndex"]),
                "host_id": char(raw["hostId"]), "peer_type": char(raw["peerType"]), "module_id": char(raw["moduleId"])}

    def fabric_info(self, handle: ReplayHandle) -> dict[str, str | int]:
        raw = self._recorded(handle, "fabric_info", "nvmlDeviceGetGpuFabricInfoV")
        # The recording printed the cluster UUID bytes as an object repr; nvidia-smi showed all zeros.
        return {"cluster_uuid": "00000000-0000-0000-0000-000000000000", "clique_id": int(raw["cliqueId"]),
                "state": int(raw["state"]), "status": int(raw["status"]), "health_mask": int(raw["healthMask"])}

    def memory_info(self, handle: ReplayHandle) -> tuple[int, int]:
        mem = self._recorded(handle, "memory_info", "nvmlDeviceGetMemoryInfo")
        return int(mem["used"]), int(mem["total"])

    def utilization(self, handle: ReplayHandle) -> tuple[int, int]:
        util = self._recorded(handle, "utilization", "nvmlDeviceGetUtilizationRates")
        if self.phase == "load":
            util = self._devices[handle.index].get("util_under_load", util)
        return int(util["gpu"]), int(util["memory"])

    def power_usage_mw(self, handle: ReplayHandle) -> int:
        value = self._recorded(handle, "power_usage_mw", "nvmlDeviceGetPowerUsage")
        if self.phase == "load":
            value = self._devices[handle.index].get("power_under_load", value)
        return int(value)

    def power_limit_mw(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit"))

    def total_energy_mj(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "total_energy_mj", "nvmlDeviceGetTotalEnergyConsumption"))

    def temperature_c(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "temperature_c", "nvmlDeviceGetTemperature(0,)"))

    def clock_mhz(self, handle: ReplayHandle, clock: int) -> int:
        return int(self._recorded(handle, "clock_mhz", f"nvmlDeviceGetClockInfo({clock},)"))

    def performance_state(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "performance_state", "nvmlDeviceGetPerformanceState"))

    def pcie_link_generation(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "pcie_link_generation", "nvmlDeviceGetCurrPcieLinkGeneration"))

    def pcie_link_width(self, handle: ReplayHandle) -> int:
        return int(self._recorded(handle, "pcie_link_width", "nvmlDeviceGetCurrPcieLinkWidth"))

    def clocks_event_reasons(self, handle: ReplayHandle) -> int:
        value = self._recorded(handle, "clocks_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons")
        if self.phase == "load":
            value = self._devices[handle.index].get("clock_reasons_under_load", value)
        return int(value)

    def field_values(self, handle: ReplayHandle, requests: Sequence[tuple[int, int]]) -> list[FieldValue]:
        device = self._enter("field_values", handle)
        assert device is not None
        unscoped = device["fieldvalues_unscoped"]
        self._spend(FIELD_CALL_BASE_US + sum(
            float(unscoped.get(name, {}).get("lat_us") or 0.0)
            for field_id, _ in requests for name in self._field_names.get(field_id, [])[:1]))
        return [self._field(handle.index, device, field_id, scope) for field_id, scope in requests]

    def _field(self, index: int, device: Mapping[str, Any], field_id: int, scope: int) -> FieldValue:
        override = self._fields.get((index, field_id, scope))
        if override is not None:
            return override
        names = self._field_names.get(field_id, [])
        scoped = device["fieldvalues_scoped_by_link"].get(str(scope), {}).get("values", {})
        for name in names:
            entry = scoped.get(name)
            if entry is not None:
                return FieldValue(entry["ret"], entry["value"] if entry["ret"] == SUCCESS else None)
        for name in names:
            entry = device["fieldvalues_unscoped"].get(name)
            if entry is not None:
                return FieldValue(entry["ret"], entry["value"] if entry["ret"] == SUCCESS else None)
        return FieldValue(NOT_SUPPORTED)

    def _link(self, handle: ReplayHandle, method: str, link: int) -> dict[str, Any]:
        device = self._enter(method, handle)
        assert device is not None
        links = device["links"]
        if not 0 <= link < len(links) or links[link].get("state_err"):
            raise NvmlError(INVALID_ARGUMENT, method)
        return links[link]

    def nvlink_remote_device_type(self, handle: ReplayHandle, link: int) -> int:
        return int(self._link(handle, "nvlink_remote_device_type", link)["remote_type"])

    def nvlink_remote_pci_bus_id(self, handle: ReplayHandle, link: int) -> str:
        return str(self._link(handle, "nvlink_remote_pci_bus_id", link)["remote_pci"])

    def nvlink_error_counter(self, handle: ReplayHandle, link: int, counter: int) -> int:
        entry = self._link(handle, "nvlink_error_counter", link)
        self._spend(float(entry["error_counters"][_LEGACY_NAMES[counter]].get("us") or 0.0))
        key = (handle.index, link, counter)
        if key in self._legacy:
            value = self._legacy[key]
            if value is None:
                raise NvmlError(NOT_SUPPORTED, "nvmlDeviceGetNvLinkErrorCounter")
            return value
        recorded = entry["error_counters"][_LEGACY_NAMES[counter]]
        if recorded.get("err"):
            raise _error(recorded["err"], "nvmlDeviceGetNvLinkErrorCounter")
        return int(recorded["value"])

    def gpm_supported(self, handle: ReplayHandle) -> bool:
        return bool(self._recorded(handle, "gpm_supported", "gpm_support")["isSupportedDevice"])

    def gpm_sample(self, handle: ReplayHandle) -> tuple[int, int]:
        self._enter("gpm_sample", handle)
        return (handle.index, self.calls["gpm_sample"])

    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: Sequence[int]) -> dict[int, float]:
        self._enter("gpm_metrics")
        index = later[0]
        if index in self._lost:
            raise NvmlError(GPU_IS_LOST, "nvmlGpmMetricsGet")
        recorded = self._rec["gpm"].get(f"{self.phase}_{index}", {})
        out = {}
        for metric_id in metric_ids:
            value = recorded.get(self._gpm_names.get(metric_id, ""))
            if isinstance(value, (int, float)):
                out[metric_id] = float(value)
        return out

    def gpm_free(self, sample: Any) -> None:
        self._enter("gpm_free")

    def xid_event_set(self, handles: Sequence[ReplayHandle]) -> tuple[Any, list[ReplayHandle]]:
        self._enter("xid_event_set")
        return object(), [h for h in handles if h.index not in self._lost]

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent | None:
        self._enter("xid_wait")
        try:
            return self._xids.get(timeout=min(timeout_ms / 1000, self._xid_wait_cap))
        except queue.Empty:
            return None

    def xid_free(self, event_set: Any) -> None:
        self._enter("xid_free")
