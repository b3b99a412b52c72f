"""One poll of one GPU: the calls its capabilities allow, turned into catalog samples.

A reading is a list of ``(metric, label values, value)``; label values start with the GPU index
(and the link for per-link metrics) in catalog order. A call that fails without the GPU being lost
(Timeout, NoData, a bindings bug) costs only its own series: the reading keeps the others and
names the failed call in :attr:`Reading.failures`. A path that answered at probe and now says
NotSupported or FunctionNotFound is dropped from the capabilities instead. :class:`GpuState` keeps what must survive
between polls of the same GPU: the last GPM sample and the legacy NVLink counters, which are
read on their own slower cadence because NVML answers them one link and counter per call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from exporter.catalog.clock_events import CLOCK_EVENT_BITS
from exporter.sources.nvml import fields as nf
from exporter.sources.nvml.backend import LOST_CODES, SUCCESS, UNINITIALIZED, Backend, NvmlError
from exporter.sources.nvml.capabilities import CLOCK_MEM, CLOCK_SM, GpuCapabilities

Sample = tuple[str, tuple[str, ...], float]
T = TypeVar("T")

# GPM metrics are computed from two samples; closer than this NVML has little to go on. On an H200
# (driver 580) nvmlGpmMetricsGet segfaulted the process for a pair taken milliseconds apart while the
# other GPU's read thread was inside NVML; the same gaps in a single-threaded process did not crash
# (bench/results/nvml_hw_report.md). Both guards stay: a minimum gap, and GPM calls serialised
# across the per-GPU read threads (they take tens of µs).
GPM_MIN_GAP_SECONDS = 0.2
log = logging.getLogger(__name__)
_GPM_LOCK = threading.Lock()
GPM_LOCK_WAIT_SECONDS = 0.5


@dataclass
class GpuState:
    caps: GpuCapabilities
    gpm_sample: Any = None
    gpm_taken_at: float = 0.0
    legacy_values: dict[tuple[int, int], int] = field(default_factory=dict)
    link_states: dict[int, int] = field(default_factory=dict)
    legacy_read_at: float | None = None


@dataclass
class Reading:
    """One poll of one GPU: the series that read, and the calls that failed ``(call, error)``."""

    samples: list[Sample] = field(default_factory=list)
    failures: list[tuple[str, BaseException]] = field(default_factory=list)

    def attempt(self, caps: GpuCapabilities, path: str, call: Callable[[], T]) -> T | None:
        """``call()``, or None after recording why not. A lost GPU and Uninitialized propagate."""
        try:
            return call()
        except NvmlError as exc:
            if exc.lost or exc.code == UNINITIALIZED:
                raise
            if exc.unsupported and path in caps.plain:
                caps.plain.discard(path)
                caps.unsupported[path] = str(exc)
                return None
            self.failures.append((path, exc))
        except Exception as exc:  # noqa: BLE001 - a bindings bug costs this call's series, not the GPU's
            self.failures.append((path, exc))
        return None


def read_gpu(backend: Backend, state: GpuState, driver: str, now: float, legacy_interval: float,
             gpm: bool = True) -> Reading:
    """Everything this GPU answers right now (GPM only when ``gpm``). Raises NvmlError when the GPU is lost.

    ``now`` is the poll's monotonic time: it paces the legacy counters and the GPM samples."""
    caps = state.caps
    g = str(caps.index)
    reading = Reading()
    out = reading.samples
    out.append(("blackwell_gpu_info", (g, caps.uuid, caps.name, caps.pci_bus_id, caps.architecture,
                                       caps.compute_capability, driver, caps.vbios_version, caps.module_id), 1))
    reading.attempt(caps, "field_values", lambda: _read_fields(backend, state, out))
    for path in sorted(caps.plain):
        out.extend(reading.attempt(caps, path, lambda path=path: PLAIN_READERS[path](backend, caps.handle, g)) or [])
    _add_probed(caps, out)
    _read_legacy(backend, state, out, now, legacy_interval, reading)
    if gpm and caps.gpm:
        reading.attempt(caps, "gpm", lambda: _read_gpm(backend, state, out, now))
    return reading


def _memory(backend: Backend, h: Any, g: str) -> list[Sample]:
    """nvidia-smi's FB memory lines: used and reserved apart (NVML v2), as nvidia-smi -q prints them."""
    memory = backend.memory_info(h)
    out: list[Sample] = [("blackwell_gpu_memory_used_bytes", (g,), memory.used),
                         ("blackwell_gpu_memory_total_bytes", (g,), memory.total)]
    if memory.reserved is not None:
        out.append(("blackwell_gpu_memory_reserved_bytes", (g,), memory.reserved))
    return out


def _utilization(backend: Backend, h: Any, g: str) -> list[Sample]:
    gpu_util, mem_util = backend.utilization(h)
    return [("blackwell_gpu_utilization_ratio", (g,), gpu_util / 100),
            ("blackwell_gpu_memory_utilization_ratio", (g,), mem_util / 100)]


def _clock_events(backend: Backend, h: Any, g: str) -> list[Sample]:
    mask = backend.clocks_event_reasons(h)
    return [("blackwell_gpu_clock_event_active", (g, reason), int(bool(mask & bit)))
            for bit, reason in CLOCK_EVENT_BITS.items()]


def _fabric(backend: Backend, h: Any, g: str) -> list[Sample]:
    fabric = backend.fabric_info(h)
    state = nf.FABRIC_STATES.get(int(fabric["state"]), str(fabric["state"]))
    return [("blackwell_gpu_fabric_info", (g, str(fabric["clique_id"]), str(fabric["cluster_uuid"]), state,
                                           str(fabric["status"])), 1),
            ("blackwell_gpu_fabric_health_mask", (g,), int(fabric["health_mask"]))]


def _one(metric: str, read: Callable[[Backend, Any], float], scale: float = 1.0
         ) -> Callable[[Backend, Any, str], list[Sample]]:
    """A plain call that yields one per-GPU series: its answer times ``scale``."""
    return lambda backend, h, g: [(metric, (g,), read(backend, h) * scale)]


# Each plain call of capabilities.PLAIN_CALLS -> the samples it yields.
PLAIN_READERS: dict[str, Callable[[Backend, Any, str], list[Sample]]] = {
    "memory_info": _memory,
    "utilization": _utilization,
    "power_usage": _one("blackwell_gpu_power_watts", lambda b, h: b.power_usage_mw(h), 1e-3),
    "power_limit": _one("blackwell_gpu_power_limit_watts", lambda b, h: b.power_limit_mw(h), 1e-3),
    "total_energy": _one("blackwell_gpu_energy_joules_total", lambda b, h: b.total_energy_mj(h), 1e-3),
    "temperature": _one("blackwell_gpu_temperature_celsius", lambda b, h: b.temperature_c(h)),
    "sm_clock": _one("blackwell_gpu_sm_clock_hertz", lambda b, h: b.clock_mhz(h, CLOCK_SM), 1e6),
    "memory_clock": _one("blackwell_gpu_memory_clock_hertz", lambda b, h: b.clock_mhz(h, CLOCK_MEM), 1e6),
    "performance_state": _one("blackwell_gpu_performance_state", lambda b, h: b.performance_state(h)),
    "pcie_link_generation": _one("blackwell_gpu_pcie_link_generation", lambda b, h: b.pcie_link_generation(h)),
    "pcie_link_width": _one("blackwell_gpu_pcie_link_width", lambda b, h: b.pcie_link_width(h)),
    "clocks_event_reasons": _clock_events,
    "fabric_info": _fabric,
}


def _add_probed(caps: GpuCapabilities, out: list[Sample]) -> None:
    """What the probe found once: platform, peak bandwidth, C2C, link identities and speeds."""
    g = str(caps.index)
    add = out.append
    if caps.platform is not None:
        p = caps.platform
        add(("blackwell_gpu_platform_info", (g, p["chassis_serial_number"], p["slot_number"], p["tray_index"],
                                             p["host_id"], p["peer_type"], p["module_id"]), 1))
    if caps.hbm_peak_bytes_per_second:
        add(("blackwell_gpu_hbm_peak_bandwidth_bytes_per_second", (g,), caps.hbm_peak_bytes_per_second))
    add(("blackwell_c2c_enabled", (g,), int(caps.c2c)))
    for link, ident in sorted(caps.links.items()):
        add(("blackwell_nvlink_link_info", (g, str(link), ident.version, ident.remote_device_type,
                                            ident.remote_pci_bus_id), 1))
    for link, speed in sorted(caps.link_speeds.items()):
        add(("blackwell_nvlink_link_speed_bytes_per_second", (g, str(link)), speed))


def _read_fields(backend: Backend, state: GpuState, out: list[Sample]) -> None:
    caps = state.caps
    if not caps.field_requests:
        return
    h, g = caps.handle, str(caps.index)
    if caps.batch_per_link:
        answers = []
        start = 0
        while start < len(caps.field_requests):
            scope = caps.field_targets[start][1]
            end = start
            while end < len(caps.field_requests) and caps.field_targets[end][1] == scope:
                end += 1
            answers.extend(backend.field_values(h, caps.field_requests[start:end]))
            start = end
    else:
        answers = backend.field_values(h, caps.field_requests)
    changed: list[int] = []
    sums: dict[tuple[str, tuple[str, ...]], float] = {}
    for (spec, link), answer in zip(caps.field_targets, answers, strict=True):
        if answer.ret in LOST_CODES:
            raise NvmlError(answer.ret, "nvmlDeviceGetFieldValues")
        if answer.ret != SUCCESS or answer.value is None:
            continue  # an entry that answered at probe may be briefly unavailable; skip this cycle
        if link is None:
            out.append((spec.metric, (g, *spec.labels), answer.value * spec.scale))
        elif isinstance(spec, nf.LinkField):
            if spec.sum_over_links:
                key = (spec.metric, (g, *spec.labels))
                sums[key] = sums.get(key, 0.0) + answer.value * spec.scale
                continue
            if spec.field_id == nf.LINK_STATE:
                value: float = int(answer.value == 1)
                if state.link_states.get(link, answer.value) != answer.value:
                    changed.append(link)
                state.link_states[link] = int(answer.value)
            elif spec.ber:
                value = nf.decode_ber(int(answer.value))
            else:
                value = answer.value * spec.scale
            out.append((spec.metric, (g, str(link), *spec.labels), value))
    out.extend((metric, labels, value) for (metric, labels), value in sums.items())
    if changed:
        speeds = backend.field_values(h, [(nf.LINK_SPEED, link) for link in changed])
        for link, answer in zip(changed, speeds, strict=True):
            if answer.ret == SUCCESS and answer.value is not None:
                caps.link_speeds[link] = float(answer.value) * 1e6
            else:
                caps.link_speeds.pop(link, None)


def _read_legacy(backend: Backend, state: GpuState, out: list[Sample], now: float, interval: float,
                 reading: Reading) -> None:
    caps = state.caps
    if not caps.legacy:
        return
    if state.legacy_read_at is None or now - state.legacy_read_at >= interval:
        values = {}
        for link, counter in caps.legacy:
            value = reading.attempt(caps, "legacy_nvlink", lambda link=link, counter=counter: (
                backend.nvlink_error_counter(caps.handle, link, counter)))
            if value is not None:
                values[(link, counter)] = value
            elif (link, counter) in state.legacy_values:
                values[(link, counter)] = state.legacy_values[(link, counter)]  # keep the last value read
        state.legacy_values = values
        state.legacy_read_at = now
    g = str(caps.index)
    for (link, counter), value in sorted(state.legacy_values.items()):
        out.append((nf.LEGACY_COUNTERS[counter], (g, str(link)), value))


def _read_gpm(backend: Backend, state: GpuState, out: list[Sample], now: float) -> None:
    caps = state.caps
    earlier = state.gpm_sample
    if earlier is not None and now - state.gpm_taken_at < GPM_MIN_GAP_SECONDS:
        return  # too soon after the last sample: keep it and wait for the next poll
    # Bounded wait: if another GPU's thread hangs inside NVML holding the lock, this GPU skips its
    # GPM rates for this poll instead of stalling behind it (and being reported lost with it).
    if not _GPM_LOCK.acquire(timeout=GPM_LOCK_WAIT_SECONDS):
        log.warning("nvml: GPU %s skipped GPM this poll: another GPU's GPM call has not returned", caps.index)
        return
    try:
        later = backend.gpm_sample(caps.handle)
        state.gpm_sample, state.gpm_taken_at = later, now
        if earlier is None:
            return  # rates need two samples: the first poll only takes one
        try:
            link_ids = nf.gpm_link_ids(caps.link_count)
            device_ids = [i for i in nf.GPM_DEVICE_METRICS if caps.c2c or i not in nf.GPM_C2C_IDS]
            values = backend.gpm_metrics(earlier, later, [*device_ids, *link_ids])
        finally:
            backend.gpm_free(earlier)
    finally:
        _GPM_LOCK.release()
    g = str(caps.index)
    for metric_id, value in values.items():
        if metric_id in nf.GPM_DEVICE_METRICS:
            metric, labels, scale = nf.GPM_DEVICE_METRICS[metric_id]
            out.append((metric, (g, *labels), value * scale))
        elif metric_id in link_ids:
            metric, link = link_ids[metric_id]
            out.append((metric, (g, str(link)), value * 1024.0 * 1024.0))
