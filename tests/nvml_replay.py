"""A :class:`Backend` that answers from a recording of real NVML: the test double of the nvml source.

Tests and benchmarks only: it lives outside the runtime package (``exporter/``), imported as
``tests.nvml_replay`` (``bench/`` puts the repository root on ``sys.path``).

The recording is the JSON that ``tools/nvml_probe.py`` writes (``fixtures/nvml/h200x2/``): every
plain call's value or error per GPU, per-link state and legacy counters, every field unscoped
and scoped per link, GPM metrics idle and under load. Calls the recording lacks come from an
``overlay`` mapping (same shape as ``calls``); anything still missing answers FunctionNotFound,
as a driver older than the bindings would.

It follows NVML's documented behaviour where a test could tell the difference:

- ``nvmlInit``/``nvmlShutdown`` are reference counted: NVML stays initialised until every init has
  had its shutdown, and a call with the count at 0 answers Uninitialized. Shutting NVML down while
  another thread is inside a call is what crashed the process on real hardware: the replay records
  it in :attr:`ReplayBackend.violations` (tests assert it stays empty).
- A lost GPU answers GpuIsLost to every call, ``nvmlDeviceGetHandleByIndex`` and
  ``nvmlDeviceGetHandleByUUID`` included; :meth:`ReplayBackend.detach_gpu` removes it from the
  device count after the next re-init, as when the driver no longer enumerates it.
- GPM metrics need two live samples of the same GPU, taken in order: the answer is the recorded
  idle/load value averaged over the time between them (a phase change in between mixes them by
  time). A freed or reused sample answers InvalidArgument.
- Counters advance: energy by power x time on the replay's clock.
- XID events reach only event sets their GPU is registered on; events with no set are dropped.
- The fabric cluster UUID is the GPU's own (the capture's nvidia-smi showed all zeros on this
  H200, whose fabric state is Completed without an NVSwitch domain); :meth:`make_blackwell` puts
  the GPU in an NVL72-like domain with a real cluster UUID and clique.
- Recorded errors replay with the code NVML gave (names resolved through the bindings' own
  error classes); a mistake of the recording tool itself (``PY:TypeError(...)``) was a Python
  exception from the bindings and replays as that exception, not as an NVML code.

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

import builtins
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    MemoryInfo,
    NvmlError,
    XidEvent,
)

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


def error_codes() -> dict[str, int]:
    """NVML error names as the recording spells them ("NotSupported") -> return codes, from the
    bindings' own error classes (``NVMLError_NotSupported`` carries code 3)."""
    import pynvml

    mapping = pynvml.NVMLError._valClassMapping  # noqa: SLF001 - the bindings' code -> class table
    return {cls.__name__.removeprefix("NVMLError_"): code for code, cls in mapping.items()}


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


@dataclass
class GpmSample:
    """What nvmlGpmSampleAlloc hands out; filled by nvmlGpmSampleGet."""

    index: int | None = None
    taken_at: float | None = None
    load_seconds: float = 0.0  # the GPU's time under load up to ``taken_at``
    freed: bool = False


@dataclass
class EventSet:
    registered: set[int] = field(default_factory=set)
    events: queue.Queue[XidEvent] = field(default_factory=queue.Queue)
    freed: bool = False


# A Blackwell NVL72 domain as nvidia-smi -q shows one: every GPU of the rack shares the cluster UUID.
NVL72_CLUSTER_UUID = "4c0f8f2e-9b1d-4e55-a1c3-7d2b6e9f0a18"
_CAPTURE_CLUSTER_UUID = "00000000-0000-0000-0000-000000000000"  # the capture's smi_q.txt "ClusterUUID"


def recorded_error(text: str, call: str, codes: Mapping[str, int]) -> Exception:
    """The error a recorded answer stands for.

    "NVMLError_Timeout:Timeout" -> NvmlError(10); an NVML name the bindings do not know keeps its
    place as an unknown code rather than posing as GpuIsLost or Unknown (999, which means lost).
    "PY:TypeError(...)" was the bindings raising before NVML was asked: replay that exception."""
    if text.startswith("NVMLError_"):
        name = text[len("NVMLError_"):].split(":", 1)[0]
        if name not in codes:
            raise ValueError(f"the recording names an NVML error the bindings do not know: {text!r}")
        return NvmlError(codes[name], call)
    if text.startswith("PY:"):
        kind, _, message = text[3:].partition("(")
        exception = getattr(builtins, kind, None)
        if isinstance(exception, type) and issubclass(exception, Exception):
            return exception(message.rstrip(")").strip("'\""))
        return RuntimeError(text[3:])
    raise ValueError(f"unreadable recorded error {text!r}")


class ReplayBackend(Backend):
    def __init__(self, recording: Mapping[str, Any], overlay: Mapping[str, Mapping[str, Any]] | None = None,
                 xid_wait_cap: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self._rec = recording
        self._devices = list(recording["devices"])
        self._overlay = overlay or {}
        self._field_names, self._gpm_names = _name_tables()
        self._codes = error_codes()
        self._clock = clock
        self._refs = 0  # nvmlInit calls not yet matched by nvmlShutdown
        self._inside = 0  # calls blocked inside NVML right now (hung calls, event waits)
        self._lost: set[int] = set()
        self._detached: set[int] = set()
        self._enumerated = list(range(len(self._devices)))  # NVML index -> recorded device
        self._event_sets: list[EventSet] = []
        self._fabric: dict[int, dict[str, str | int]] = {}
        started = clock()
        self._phase = "idle"
        self._phase_since = started
        self._load_seconds = dict.fromkeys(range(len(self._devices)), 0.0)
        self._energy_mj = {i: float(self._answer(i, "nvmlDeviceGetTotalEnergyConsumption") or 0.0)
                           for i in range(len(self._devices))}
        self._energy_at = dict.fromkeys(range(len(self._devices)), started)
        self.violations: list[str] = []
        self._hangs: dict[tuple[int, str], threading.Event] = {}
        self._failures: dict[tuple[int, str | None], int] = {}
        self._fields: dict[tuple[int, int, int], FieldValue] = {}
        self._legacy: dict[tuple[int, int, int], int | None] = {}
        self._plain: dict[tuple[int, str], Any] = {}
        self._gpm_values: dict[tuple[int, int], tuple[float, float]] = {}  # (GPU, metric id) -> idle, load
        self._xid_wait_cap = xid_wait_cap
        self._event_wait_hang: threading.Event | None = None
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.init_count = 0
        self.elapsed_us = 0.0

    # -- time: the GPM phase and the counters that advance with it --------------------------
    @property
    def phase(self) -> str:
        """What the GPUs are doing: "idle" or "load" (GPM, utilization and power answers)."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        with self._lock:
            self._advance()
            now = self._clock()
            if self._phase == "load":
                for index in self._load_seconds:
                    self._load_seconds[index] += now - self._phase_since
            self._phase, self._phase_since = value, now

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Keep time by ``clock`` from now on (a test's fake clock, shared with the source)."""
        with self._lock:
            self._advance()
            if self._phase == "load":
                for index in self._load_seconds:
                    self._load_seconds[index] += self._clock() - self._phase_since
            self._clock = clock
            now = self._phase_since = clock()
            self._energy_at = dict.fromkeys(self._energy_at, now)

    def _advance(self, only: int | None = None) -> None:
        """Add power x time since the last call to the energy counter of GPU ``only`` (every GPU
        when None); under the lock."""
        now = self._clock()
        for index in self._energy_mj if only is None else (only,):
            self._energy_mj[index] += self._power_mw(index) * max(0.0, now - self._energy_at[index])
            self._energy_at[index] = now

    def _power_mw(self, index: int) -> float:
        device = self._devices[index]
        value = self._plain.get((index, "power_usage_mw"), self._answer(index, "nvmlDeviceGetPowerUsage") or 0)
        if self._phase == "load":
            value = device.get("power_under_load", value)
        return float(value)

    def _load_seconds_now(self, index: int) -> float:
        extra = self._clock() - self._phase_since if self._phase == "load" else 0.0
        return self._load_seconds[index] + extra

    def _answer(self, index: int, key: str) -> Any:
        entry = self._devices[index]["calls"].get(key) or {}
        return entry.get("value")

    # -- failure injection -------------------------------------------------------------------
    def lose_gpu(self, index: int) -> None:
        """The GPU falls off the bus: every call on it answers GpuIsLost, lookups included, until
        :meth:`restore_gpu`."""
        self._lost.add(index)

    def detach_gpu(self, index: int) -> None:
        """Lost, and no longer enumerated once NVML is initialised afresh (the driver dropped it)."""
        self.lose_gpu(index)
        self._detached.add(index)

    def restore_gpu(self, index: int) -> None:
        self._lost.discard(index)
        self._detached.discard(index)
        self._failures = {k: v for k, v in self._failures.items() if k[0] != index}

    def fail(self, index: int, method: str | None, code: int) -> None:
        """Calls of ``method`` (every method when None) on GPU ``index`` answer NVML error ``code``."""
        self._failures[(index, method)] = code

    def hang(self, index: int, method: str) -> threading.Event:
        """Calls of ``method`` on GPU ``index`` block until the returned event is set."""
        event = threading.Event()
        self._hangs[(index, method)] = event
        return event

    def hang_event_waits(self) -> threading.Event:
        """nvmlEventSetWait calls block (past their timeout) until the returned event is set."""
        self._event_wait_hang = threading.Event()
        return self._event_wait_hang

    def unhang(self, index: int, method: str) -> None:
        """Let the hung calls of ``method`` on GPU ``index`` (and later ones) return."""
        event = self._hangs.pop((index, method), None)
        if event is not None:
            event.set()

    def emit_xid(self, index: int, xid: int) -> None:
        """GPU ``index`` raises XID ``xid``: delivered to every live event set it is registered on."""
        event = XidEvent(self._devices[index]["calls"]["nvmlDeviceGetUUID"]["value"], xid)
        with self._lock:
            sets = [es for es in self._event_sets if index in es.registered and not es.freed]
        for event_set in sets:
            event_set.events.put(event)

    def set_fabric(self, index: int, cluster_uuid: str, clique_id: int, state: int = 3, status: int = 0,
                   health_mask: int = 0) -> None:
        """Answer nvmlDeviceGetGpuFabricInfoV for GPU ``index`` with these values from now on."""
        self._fabric[index] = {"cluster_uuid": cluster_uuid, "clique_id": clique_id, "state": state,
                               "status": status, "health_mask": health_mask}

    def set_field(self, index: int, field_id: int, value: int | float | None, scope: int = 0) -> None:
        """Answer ``field_id`` with ``value`` (None: NotSupported) from now on."""
        self._fields[(index, field_id, scope)] = FieldValue(SUCCESS, value) if value is not None else FieldValue(
            NOT_SUPPORTED)

    def set_legacy(self, index: int, link: int, counter: int, value: int | None) -> None:
        self._legacy[(index, link, counter)] = value

    def set_plain(self, index: int, method: str, value: Any) -> None:
        self._plain[(index, method)] = value

    def make_blackwell(self, index: int, name: str = "NVIDIA B200") -> None:
        """Turn GPU ``index`` into a Blackwell: NVLink5 COUNT_* fields answer and the links say NVLink 5,
        while the Hopper data-link fields 161-163 and the legacy per-link call answer NotSupported (nvml.h)."""
        self.set_plain(index, "architecture", 10)
        self.set_plain(index, "name", name)
        self.set_plain(index, "compute_capability", (10, 0))
        self.set_fabric(index, NVL72_CLUSTER_UUID, clique_id=32766)
        for link in range(self._link_count(index)):
            for field_id, value in BLACKWELL_LINK_VALUES.items():
                self.set_field(index, field_id, value, link)
            self.set_field(index, 166, 7, link)  # NVLINK_GET_VERSION: nvmlNvlinkVersion_t 7 is NVLink 5.0
            self.set_field(index, 164, 53_125, link)  # NVLINK_GET_SPEED in MB/s, as nvidia-smi shows on GB200
            for field_id in (161, 162, 163):
                self.set_field(index, field_id, None, link)
            for counter in _LEGACY_NAMES:
                self.set_legacy(index, link, counter, None)

    def make_grace(self, index: int) -> None:
        """Join GPU ``index`` to a Grace CPU over NVLink-C2C, as on a GB200: C2C mode on, the C2C link
        up (field 171) and GPM C2C rates (ids 100-103, MiB/s) of a GPU reading ~2% of its data from Grace."""
        self.set_plain(index, "c2c_enabled", {"isC2cEnabled": 1})
        self.set_field(index, 171, 1)
        for metric_id, load in ((100, 14_000.0), (101, 150_000.0), (102, 13_000.0), (103, 139_000.0)):
            self._gpm_values[(index, metric_id)] = (load / 1000, load)

    # -- plumbing ----------------------------------------------------------------------------
    def _enter(self, method: str, handle: ReplayHandle | None = None) -> dict[str, Any] | None:
        with self._lock:
            self.calls[method] += 1
        if self._refs == 0:
            raise NvmlError(UNINITIALIZED, method)
        if handle is None:
            return None
        event = self._hangs.get((handle.index, method))
        if event is not None:
            self._blocked(event.wait)
            if self._refs == 0:
                raise NvmlError(UNINITIALIZED, method)  # NVML went away under the call
        if handle.index in self._lost:
            raise NvmlError(GPU_IS_LOST, method)
        code = self._failures.get((handle.index, method), self._failures.get((handle.index, None)))
        if code is not None:
            raise NvmlError(code, method)
        return self._devices[handle.index]

    def _blocked(self, wait: Callable[[], Any]) -> Any:
        """Run ``wait`` counted as a call inside NVML (what nvmlShutdown must not pull away)."""
        with self._lock:
            self._inside += 1
        try:
            return wait()
        finally:
            with self._lock:
                self._inside -= 1

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
            raise recorded_error(entry["err"], key, self._codes)
        return entry["value"]

    def _link_count(self, index: int) -> int:
        answer = self._devices[index]["fieldvalues_unscoped"].get("NVML_FI_DEV_NVLINK_LINK_COUNT", {})
        return int(answer.get("value") or 0) if answer.get("ret") == SUCCESS else 0

    # -- Backend -----------------------------------------------------------------------------
    def init(self) -> None:
        """nvmlInit: counted; the first init of a session enumerates the GPUs the driver lists."""
        with self._lock:
            self.calls["init"] += 1
            if self._refs == 0:
                self._enumerated = [i for i in range(len(self._devices)) if i not in self._detached]
            self._refs += 1
            self.init_count += 1

    def shutdown(self) -> None:
        """nvmlShutdown: NVML is torn down when the last init has had its shutdown."""
        self._enter("shutdown")
        with self._lock:
            self._refs -= 1
            if self._refs == 0 and self._inside:
                self.violations.append(f"nvmlShutdown tore NVML down while {self._inside} call(s) were inside it")

    @property
    def initialised(self) -> bool:
        return self._refs > 0

    def driver_version(self) -> str:
        self._enter("driver_version")
        return str(self._rec["driver"])

    def device_count(self) -> int:
        self._enter("device_count")
        return len(self._enumerated)

    def handle_by_index(self, index: int) -> ReplayHandle:
        self._enter("handle_by_index")
        if not 0 <= index < len(self._enumerated):
            raise NvmlError(INVALID_ARGUMENT, "nvmlDeviceGetHandleByIndex")
        device = self._enumerated[index]
        if device in self._lost:
            raise NvmlError(GPU_IS_LOST, "nvmlDeviceGetHandleByIndex")
        return ReplayHandle(device)

    def handle_by_uuid(self, uuid: str) -> ReplayHandle:
        self._enter("handle_by_uuid")
        for i in self._enumerated:
            if self._devices[i]["calls"]["nvmlDeviceGetUUID"]["value"] == uuid:
                if i in self._lost:
                    raise NvmlError(GPU_IS_LOST, "nvmlDeviceGetHandleByUUID")
                return ReplayHandle(i)
        raise NvmlError(NOT_FOUND, "nvmlDeviceGetHandleByUUID")

    def index(self, handle: ReplayHandle) -> int:
        self._enter("index", handle)
        return self._enumerated.index(handle.index)

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
        if handle.index in self._fabric:
            return dict(self._fabric[handle.index])
        # The recording printed the cluster UUID bytes as an object repr: take the value nvidia-smi -q
        # printed for this GPU in the same capture (all zeros: no NVSwitch domain on this H200 pair).
        cluster = str(raw["clusterUuid"])
        if cluster.startswith("<"):
            cluster = _CAPTURE_CLUSTER_UUID
        return {"cluster_uuid": cluster, "clique_id": int(raw["cliqueId"]),
                "state": int(raw["state"]), "status": int(raw["status"]), "health_mask": int(raw["healthMask"])}

    def memory_info(self, handle: ReplayHandle) -> MemoryInfo:
        """nvmlDeviceGetMemoryInfo_v2 where the recording or its overlay has it, else v1 (no reserved)."""
        device = self._devices[handle.index]
        if "nvmlDeviceGetMemoryInfo_v2" in device["calls"] or "nvmlDeviceGetMemoryInfo_v2" in self._overlay:
            mem = self._recorded(handle, "memory_info", "nvmlDeviceGetMemoryInfo_v2")
            return MemoryInfo(int(mem["used"]), int(mem["reserved"]), int(mem["total"]))
        mem = self._recorded(handle, "memory_info", "nvmlDeviceGetMemoryInfo")
        return MemoryInfo(int(mem["used"]), None, int(mem["total"]))

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
        recorded = self._recorded(handle, "total_energy_mj", "nvmlDeviceGetTotalEnergyConsumption")
        if (handle.index, "total_energy_mj") in self._plain:
            return int(recorded)
        with self._lock:
            self._advance(handle.index)
            return int(self._energy_mj[handle.index])

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
            raise recorded_error(recorded["err"], "nvmlDeviceGetNvLinkErrorCounter", self._codes)
        return int(recorded["value"])

    def gpm_supported(self, handle: ReplayHandle) -> bool:
        return bool(self._recorded(handle, "gpm_supported", "gpm_support")["isSupportedDevice"])

    def gpm_sample(self, handle: ReplayHandle) -> GpmSample:
        self._enter("gpm_sample", handle)
        return GpmSample(handle.index, self._clock(), self._load_seconds_now(handle.index))

    def gpm_metrics(self, earlier: GpmSample, later: GpmSample, metric_ids: Sequence[int]) -> dict[int, float]:
        """Each metric over the time between the samples: idle and load answers mixed by time under load."""
        self._enter("gpm_metrics")
        if (earlier is later or earlier.freed or later.freed or earlier.index != later.index
                or earlier.taken_at is None or later.taken_at is None or later.taken_at <= earlier.taken_at):
            raise NvmlError(INVALID_ARGUMENT, "nvmlGpmMetricsGet")
        index = later.index
        if index in self._lost:
            raise NvmlError(GPU_IS_LOST, "nvmlGpmMetricsGet")
        gap = later.taken_at - earlier.taken_at
        loaded = min(1.0, max(0.0, (later.load_seconds - earlier.load_seconds) / gap))
        idle, load = self._rec["gpm"].get(f"idle_{index}", {}), self._rec["gpm"].get(f"load_{index}", {})
        out = {}
        for metric_id in metric_ids:
            name = self._gpm_names.get(metric_id, "")
            low, high = self._gpm_values.get((index, metric_id), (idle.get(name), load.get(name)))
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                out[metric_id] = float(low) * (1 - loaded) + float(high) * loaded
        return out

    def gpm_free(self, sample: GpmSample) -> None:
        self._enter("gpm_free")
        if sample.freed:
            raise NvmlError(INVALID_ARGUMENT, "nvmlGpmSampleFree")  # a double free: NVML would corrupt memory
        sample.freed = True

    def xid_event_set(self, handles: Sequence[ReplayHandle]) -> tuple[EventSet, list[ReplayHandle]]:
        self._enter("xid_event_set")
        registered = [h for h in handles if h.index not in self._lost]
        event_set = EventSet({h.index for h in registered})
        with self._lock:
            self._event_sets.append(event_set)
        return event_set, registered

    def xid_wait(self, event_set: EventSet, timeout_ms: int) -> XidEvent | None:
        self._enter("xid_wait")
        if event_set.freed:
            raise NvmlError(INVALID_ARGUMENT, "nvmlEventSetWait_v2")

        def wait() -> XidEvent | None:
            if self._event_wait_hang is not None:
                self._event_wait_hang.wait()
            try:
                return event_set.events.get(timeout=min(timeout_ms / 1000, self._xid_wait_cap))
            except queue.Empty:
                return None

        return self._blocked(wait)

    def xid_free(self, event_set: EventSet) -> None:
        self._enter("xid_free")
        if event_set.freed:
            raise NvmlError(INVALID_ARGUMENT, "nvmlEventSetFree")
        event_set.freed = True
