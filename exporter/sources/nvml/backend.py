"""The thin layer between the source and NVML: one method per NVML call the source makes.

:class:`Backend` is what the source talks to; :class:`PynvmlBackend` calls the real library
(``nvidia-ml-py``), ``tests.nvml_replay.ReplayBackend`` (a test double, outside the package) answers from a
recording. Both raise :class:`NvmlError` carrying NVML's numeric return code, so the source
decides on codes, never on exception classes of one binding version. Handles are opaque.
"""

from __future__ import annotations

import abc
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# NVML return codes (nvml.h) the source acts on.
SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
TIMEOUT = 10
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
RESET_REQUIRED = 16
ARGUMENT_VERSION_MISMATCH = 25
GPU_NOT_FOUND = 28
UNKNOWN = 999

# A GPU answering one of these has fallen off the bus or needs a reset: stop asking it.
LOST_CODES = frozenset({GPU_IS_LOST, RESET_REQUIRED, UNKNOWN})
# "This path does not exist here": cached at probe, never an error; FunctionNotFound means the
# driver is older than the bindings. Nothing else is permanent: Timeout, NoData, NoPermission (a
# container's device cgroup can change) and the rest are retried.
UNSUPPORTED_CODES = frozenset({NOT_SUPPORTED, FUNCTION_NOT_FOUND})

CODE_NAMES = {SUCCESS: "Success", UNINITIALIZED: "Uninitialized", INVALID_ARGUMENT: "InvalidArgument",
              NOT_SUPPORTED: "NotSupported", NO_PERMISSION: "NoPermission", NOT_FOUND: "NotFound",
              TIMEOUT: "Timeout", FUNCTION_NOT_FOUND: "FunctionNotFound", GPU_IS_LOST: "GpuIsLost",
              RESET_REQUIRED: "ResetRequired", GPU_NOT_FOUND: "GpuNotFound", UNKNOWN: "Unknown",
              9: "DriverNotLoaded", 12: "LibraryNotFound (libnvidia-ml.so)", 17: "OperatingSystem",
              18: "LibRmVersionMismatch (driver and library versions differ)", 20: "Memory", 21: "NoData",
              ARGUMENT_VERSION_MISMATCH: "ArgumentVersionMismatch", 26: "Deprecated", 27: "NotReady"}


class NvmlError(Exception):
    """An NVML call returned ``code``. ``call`` names the call for logs."""

    def __init__(self, code: int, call: str = "") -> None:
        self.code = int(code)
        self.call = call
        name = CODE_NAMES.get(self.code, f"code {self.code}")
        super().__init__(f"{call}: {name}" if call else name)

    @property
    def lost(self) -> bool:
        return self.code in LOST_CODES

    @property
    def unsupported(self) -> bool:
        return self.code in UNSUPPORTED_CODES


@dataclass(frozen=True)
class FieldValue:
    """One answer of nvmlDeviceGetFieldValues: ``ret`` is that entry's own return code."""

    ret: int
    value: float | int | None = None


@dataclass(frozen=True)
class MemoryInfo:
    """Framebuffer bytes as nvidia-smi -q prints them: NVML v2 keeps the driver's ``reserved`` apart
    from ``used`` (v1 counts it as used); ``reserved`` is None where only v1 answers."""

    used: int
    reserved: int | None
    total: int


@dataclass(frozen=True)
class XidEvent:
    uuid: str
    xid: int


class Backend(abc.ABC):
    """Every NVML call the source makes. Methods raise :class:`NvmlError`."""

    @abc.abstractmethod
    def init(self) -> None: ...
    @abc.abstractmethod
    def shutdown(self) -> None: ...
    @abc.abstractmethod
    def driver_version(self) -> str: ...
    @abc.abstractmethod
    def device_count(self) -> int: ...
    @abc.abstractmethod
    def handle_by_index(self, index: int) -> Any: ...
    @abc.abstractmethod
    def handle_by_uuid(self, uuid: str) -> Any: ...
    @abc.abstractmethod
    def index(self, handle: Any) -> int: ...

    # identity (read at probe)
    @abc.abstractmethod
    def name(self, handle: Any) -> str: ...
    @abc.abstractmethod
    def uuid(self, handle: Any) -> str: ...
    @abc.abstractmethod
    def pci_bus_id(self, handle: Any) -> str: ...
    @abc.abstractmethod
    def architecture(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def compute_capability(self, handle: Any) -> tuple[int, int]: ...
    @abc.abstractmethod
    def vbios_version(self, handle: Any) -> str: ...
    @abc.abstractmethod
    def module_id(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def max_clock_mhz(self, handle: Any, clock: int) -> int: ...
    @abc.abstractmethod
    def memory_bus_width(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def c2c_enabled(self, handle: Any) -> bool: ...
    @abc.abstractmethod
    def platform_info(self, handle: Any) -> dict[str, str]: ...
    @abc.abstractmethod
    def fabric_info(self, handle: Any) -> dict[str, str | int]: ...

    # per cycle
    @abc.abstractmethod
    def memory_info(self, handle: Any) -> MemoryInfo: ...
    @abc.abstractmethod
    def utilization(self, handle: Any) -> tuple[int, int]:
        """(gpu, memory) percent over the driver's last sample period."""
    @abc.abstractmethod
    def power_usage_mw(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def power_limit_mw(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def total_energy_mj(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def temperature_c(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def clock_mhz(self, handle: Any, clock: int) -> int: ...
    @abc.abstractmethod
    def performance_state(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def pcie_link_generation(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def pcie_link_width(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def clocks_event_reasons(self, handle: Any) -> int: ...
    @abc.abstractmethod
    def field_values(self, handle: Any, requests: Sequence[tuple[int, int]]) -> list[FieldValue]:
        """One nvmlDeviceGetFieldValues call for (field_id, scope_id) pairs, answers in order."""

    # NVLink per link
    @abc.abstractmethod
    def nvlink_remote_device_type(self, handle: Any, link: int) -> int: ...
    @abc.abstractmethod
    def nvlink_remote_pci_bus_id(self, handle: Any, link: int) -> str: ...
    @abc.abstractmethod
    def nvlink_error_counter(self, handle: Any, link: int, counter: int) -> int: ...

    # GPM
    @abc.abstractmethod
    def gpm_supported(self, handle: Any) -> bool: ...
    @abc.abstractmethod
    def gpm_sample(self, handle: Any) -> Any:
        """Allocate and fill a new GPM sample; the caller frees it with :meth:`gpm_free`."""
    @abc.abstractmethod
    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: Sequence[int]) -> dict[int, float]:
        """Metric values between two samples; ids the GPU cannot compute are left out."""
    @abc.abstractmethod
    def gpm_free(self, sample: Any) -> None: ...

    # XID events
    @abc.abstractmethod
    def xid_event_set(self, handles: Sequence[Any]) -> tuple[Any, list[Any]]:
        """Create an event set and register XID events on every handle that supports them.

        Returns the set and the handles registered."""
    @abc.abstractmethod
    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent | None:
        """The next XID event, or None when ``timeout_ms`` passed without one."""
    @abc.abstractmethod
    def xid_free(self, event_set: Any) -> None: ...


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _raw(struct: Any, field: str) -> bytes:
    """A struct field's bytes straight from memory: pynvml's structs decode char arrays as text."""
    descriptor = getattr(type(struct), field)
    return ctypes.string_at(ctypes.addressof(struct) + descriptor.offset, descriptor.size)


class PynvmlBackend(Backend):
    """The real NVML through ``nvidia-ml-py``. Imported only when the nvml source starts."""

    def __init__(self) -> None:
        import pynvml

        self._n = pynvml
        self._memory_v2 = True

    def _call(self, name: str, *args: Any) -> Any:
        fn = getattr(self._n, name, None)
        if fn is None:
            raise NvmlError(FUNCTION_NOT_FOUND, name)
        try:
            return fn(*args)
        except self._n.NVMLError as exc:
            raise NvmlError(exc.value, name) from None

    def init(self) -> None:
        self._call("nvmlInit")

    def shutdown(self) -> None:
        self._call("nvmlShutdown")

    def driver_version(self) -> str:
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle_by_index(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def handle_by_uuid(self, uuid: str) -> Any:
        return self._call("nvmlDeviceGetHandleByUUID", uuid)

    def index(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetIndex", handle))

    def name(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", handle))

    def uuid(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def pci_bus_id(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetPciInfo_v3", handle).busId)

    def architecture(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetArchitecture", handle))

    def compute_capability(self, handle: Any) -> tuple[int, int]:
        major, minor = self._call("nvmlDeviceGetCudaComputeCapability", handle)
        return int(major), int(minor)

    def vbios_version(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetVbiosVersion", handle))

    def module_id(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetModuleId", handle))

    def max_clock_mhz(self, handle: Any, clock: int) -> int:
        return int(self._call("nvmlDeviceGetMaxClockInfo", handle, clock))

    def memory_bus_width(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetMemoryBusWidth", handle))

    def c2c_enabled(self, handle: Any) -> bool:
        return bool(self._call("nvmlDeviceGetC2cModeInfoV", handle).isC2cEnabled)

    def platform_info(self, handle: Any) -> dict[str, str]:
        struct_type = getattr(self._n, "c_nvmlPlatformInfo_v2_t", None)
        if struct_type is None:
            raise NvmlError(FUNCTION_NOT_FOUND, "nvmlDeviceGetPlatformInfo")
        info = struct_type()
        # The wrapper passes its argument through as is: a struct by value segfaults the process.
        self._call("nvmlDeviceGetPlatformInfo", handle, ctypes.byref(info))
        # GUID and serial are raw bytes, the one-byte fields small numbers: read the struct's memory.
        serial = _raw(info, "chassisSerialNumber").split(b"\0", 1)[0]
        numbers = {key: str(_raw(info, field)[0]) for key, field in (
            ("slot_number", "slotNumber"), ("tray_index", "trayIndex"), ("host_id", "hostId"),
            ("peer_type", "peerType"), ("module_id", "moduleId"))}
        return {"chassis_serial_number": serial.decode(errors="replace"), **numbers}

    def fabric_info(self, handle: Any) -> dict[str, str | int]:
        versions = [getattr(self._n, name) for name in ("c_nvmlGpuFabricInfo_v3_t", "c_nvmlGpuFabricInfo_v2_t")
                    if hasattr(self._n, name)]
        if not versions:
            raise NvmlError(FUNCTION_NOT_FOUND, "nvmlDeviceGetGpuFabricInfoV")
        for struct_type in versions:
            info = struct_type()
            try:
                self._call("nvmlDeviceGetGpuFabricInfoV", handle, ctypes.byref(info))  # byref: see platform_info
                break
            except NvmlError as exc:
                if exc.code != ARGUMENT_VERSION_MISMATCH or struct_type is versions[-1]:
                    raise
        raw = _raw(info, "clusterUuid")
        cluster = "-".join(raw[a:b].hex() for a, b in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 16)))
        return {"cluster_uuid": cluster, "clique_id": int(info.cliqueId), "state": int(info.state),
                "status": int(info.status), "health_mask": int(info.healthMask)}

    def memory_info(self, handle: Any) -> MemoryInfo:
        version = getattr(self._n, "nvmlMemory_v2", None)
        if version is not None and self._memory_v2:
            try:
                mem = self._call("nvmlDeviceGetMemoryInfo", handle, version)  # nvmlDeviceGetMemoryInfo_v2
                return MemoryInfo(int(mem.used), int(mem.reserved), int(mem.total))
            except NvmlError as exc:
                if exc.code not in (NOT_SUPPORTED, FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):
                    raise
                self._memory_v2 = False  # a driver before v2: v1's used includes the reserved memory
        mem = self._call("nvmlDeviceGetMemoryInfo", handle)
        return MemoryInfo(int(mem.used), None, int(mem.total))

    def utilization(self, handle: Any) -> tuple[int, int]:
        util = self._call("nvmlDeviceGetUtilizationRates", handle)
        return int(util.gpu), int(util.memory)

    def power_usage_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", handle))

    def power_limit_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetEnforcedPowerLimit", handle))

    def total_energy_mj(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetTotalEnergyConsumption", handle))

    def temperature_c(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetTemperature", handle, 0))  # NVML_TEMPERATURE_GPU

    def clock_mhz(self, handle: Any, clock: int) -> int:
        return int(self._call("nvmlDeviceGetClockInfo", handle, clock))

    def performance_state(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetPerformanceState", handle))

    def pcie_link_generation(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetCurrPcieLinkGeneration", handle))

    def pcie_link_width(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetCurrPcieLinkWidth", handle))

    def clocks_event_reasons(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetCurrentClocksEventReasons", handle))

    def field_values(self, handle: Any, requests: Sequence[tuple[int, int]]) -> list[FieldValue]:
        answers = self._call("nvmlDeviceGetFieldValues", handle, list(requests))
        out = []
        for fv in answers:
            if fv.nvmlReturn != SUCCESS:
                out.append(FieldValue(int(fv.nvmlReturn)))
                continue
            v = fv.value
            value = {0: v.dVal, 1: v.uiVal, 2: v.ulVal, 3: v.ullVal, 4: v.sllVal, 5: v.siVal,
                     6: getattr(v, "usVal", None)}.get(fv.valueType)
            out.append(FieldValue(SUCCESS, value) if value is not None else FieldValue(NOT_SUPPORTED))
        return out

    def nvlink_remote_device_type(self, handle: Any, link: int) -> int:
        return int(self._call("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link))

    def nvlink_remote_pci_bus_id(self, handle: Any, link: int) -> str:
        return _text(self._call("nvmlDeviceGetNvLinkRemotePciInfo", handle, link).busId)

    def nvlink_error_counter(self, handle: Any, link: int, counter: int) -> int:
        return int(self._call("nvmlDeviceGetNvLinkErrorCounter", handle, link, counter))

    def gpm_supported(self, handle: Any) -> bool:
        return bool(self._call("nvmlGpmQueryDeviceSupport", handle).isSupportedDevice)

    def gpm_sample(self, handle: Any) -> Any:
        sample = self._call("nvmlGpmSampleAlloc")
        try:
            self._call("nvmlGpmSampleGet", handle, sample)
        except NvmlError:
            self._call("nvmlGpmSampleFree", sample)
            raise
        return sample

    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: Sequence[int]) -> dict[int, float]:
        n = self._n
        request = n.c_nvmlGpmMetricsGet_t()
        request.version = n.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(metric_ids)
        request.sample1 = earlier
        request.sample2 = later
        for i, metric_id in enumerate(metric_ids):
            request.metrics[i].metricId = metric_id
        self._call("nvmlGpmMetricsGet", request)
        return {metric_id: float(request.metrics[i].value) for i, metric_id in enumerate(metric_ids)
                if request.metrics[i].nvmlReturn == SUCCESS}

    def gpm_free(self, sample: Any) -> None:
        self._call("nvmlGpmSampleFree", sample)

    def xid_event_set(self, handles: Sequence[Any]) -> tuple[Any, list[Any]]:
        event_set = self._call("nvmlEventSetCreate")
        registered = []
        xid_type = self._n.nvmlEventTypeXidCriticalError
        for handle in handles:
            try:
                if self._call("nvmlDeviceGetSupportedEventTypes", handle) & xid_type:
                    self._call("nvmlDeviceRegisterEvents", handle, xid_type, event_set)
                    registered.append(handle)
            except NvmlError as exc:
                if not (exc.unsupported or exc.lost):
                    raise
        return event_set, registered

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent | None:
        try:
            data = self._call("nvmlEventSetWait_v2", event_set, timeout_ms)
        except NvmlError as exc:
            if exc.code == TIMEOUT:
                return None
            raise
        if not data.eventType & self._n.nvmlEventTypeXidCriticalError:
            return None
        return XidEvent(self.uuid(data.device), int(data.eventData))

    def xid_free(self, event_set: Any) -> None:
        self._call("nvmlEventSetFree", event_set)
