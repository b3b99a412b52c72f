"""What each GPU answers, found once per NVML session and never asked again until re-init.

:func:`probe_gpu` tries every path the source knows on one GPU: the plain per-cycle calls,
every device and per-link field (one field-values call per link), the legacy per-link error
counter, GPM, C2C, fabric and platform info. Only NotSupported and FunctionNotFound (and a
binding that does not match the driver) leave a path out of :class:`GpuCapabilities` for the
session. Any other error (Timeout, NoData, NoPermission, ...) is transient: a per-cycle call stays
in and is retried by every poll; anything read only at probe is listed in
``GpuCapabilities.transient`` and the source probes that GPU again later. A GPU that is lost
during its probe raises :class:`~exporter.sources.nvml.backend.NvmlError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from exporter.sources.nvml import fields as nf
from exporter.sources.nvml.backend import (
    CODE_NAMES,
    LOST_CODES,
    SUCCESS,
    UNINITIALIZED,
    UNSUPPORTED_CODES,
    Backend,
    NvmlError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOCK_SM = 1
CLOCK_MEM = 2

# Plain calls made every cycle, by the name the capability table shows.
PLAIN_CALLS: dict[str, Callable[[Backend, Any], Any]] = {
    "memory_info": lambda b, h: b.memory_info(h),
    "utilization": lambda b, h: b.utilization(h),
    "power_usage": lambda b, h: b.power_usage_mw(h),
    "power_limit": lambda b, h: b.power_limit_mw(h),
    "temperature": lambda b, h: b.temperature_c(h),
    "sm_clock": lambda b, h: b.clock_mhz(h, CLOCK_SM),
    "memory_clock": lambda b, h: b.clock_mhz(h, CLOCK_MEM),
    "performance_state": lambda b, h: b.performance_state(h),
    "pcie_link_generation": lambda b, h: b.pcie_link_generation(h),
    "pcie_link_width": lambda b, h: b.pcie_link_width(h),
    "clocks_event_reasons": lambda b, h: b.clocks_event_reasons(h),
    "total_energy": lambda b, h: b.total_energy_mj(h),
    "fabric_info": lambda b, h: b.fabric_info(h),
}


@dataclass(frozen=True)
class LinkIdentity:
    version: str
    remote_device_type: str
    remote_pci_bus_id: str


@dataclass
class GpuCapabilities:
    """One GPU's identity and the paths that answered at probe."""

    index: int
    uuid: str
    handle: Any
    name: str = ""
    pci_bus_id: str = ""
    architecture: str = "unknown"
    compute_capability: str = ""
    vbios_version: str = ""
    module_id: str = ""
    plain: set[str] = field(default_factory=set)
    # The requests of the one batched field-values call, and what each answer fills.
    field_requests: list[tuple[int, int]] = field(default_factory=list)
    field_targets: list[tuple[nf.DeviceField | nf.LinkField, int | None]] = field(default_factory=list)
    # Fall back to one call per link when the driver refused the whole batch at probe.
    batch_per_link: bool = False
    link_count: int = 0
    links: dict[int, LinkIdentity] = field(default_factory=dict)
    link_speeds: dict[int, float] = field(default_factory=dict)  # bytes/s per direction, refreshed on state change
    legacy: list[tuple[int, int]] = field(default_factory=list)  # (link, counter) that answer
    gpm: bool = False
    c2c: bool = False
    platform: dict[str, str] | None = None
    hbm_peak_bytes_per_second: float | None = None
    unsupported: dict[str, str] = field(default_factory=dict)  # path -> why, for the table
    transient: dict[str, str] = field(default_factory=dict)  # probe-only paths that failed for now -> why

    def table(self) -> str:
        """The capability table logged at probe: one line per path group."""
        link_fields = sorted({t.field_id for t, link in self.field_targets if link is not None})
        device_fields = sorted({t.field_id for t, link in self.field_targets if link is None})
        legacy_links = sorted({link for link, _ in self.legacy})
        rows = [
            f"GPU {self.index} {self.name} {self.uuid} ({self.architecture}, cc {self.compute_capability})",
            f"  plain calls: {', '.join(sorted(self.plain)) or 'none'}",
            f"  device fields: {device_fields or 'none'}",
            f"  link fields ({self.link_count} links, {'per-link calls' if self.batch_per_link else 'one batched call'}, "
            f"{len(self.field_requests)} entries): {link_fields or 'none'}",
            f"  legacy nvmlDeviceGetNvLinkErrorCounter: {len(self.legacy)} (link, counter) pairs on links "
            f"{legacy_links or 'none'}",
            f"  gpm: {'yes' if self.gpm else 'no'}; c2c: {'yes' if self.c2c else 'no'}; "
            f"platform info: {'yes' if self.platform is not None else 'no'}",
        ]
        if self.unsupported:
            rows.append("  not answering: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.unsupported.items())))
        if self.transient:
            rows.append("  failed for now, probed again later: "
                        + ", ".join(f"{k} ({v})" for k, v in sorted(self.transient.items())))
        return "\n".join(rows)


def _why(exc: NvmlError) -> str:
    return CODE_NAMES.get(exc.code, f"code {exc.code}")


def _try(caps: GpuCapabilities, path: str, fn: Callable[[], T]) -> T | None:
    """Call fn; a lost GPU (or NVML gone) propagates, NotSupported/FunctionNotFound mark the path
    unsupported, any other NVML error marks it transient.

    An exception from the bindings themselves (a wrapper that does not match this driver) marks
    the path unsupported, so one broken wrapper costs one path, not the GPU."""
    try:
        return fn()
    except NvmlError as exc:
        if exc.lost or exc.code == UNINITIALIZED:
            raise
        (caps.unsupported if exc.unsupported else caps.transient)[path] = _why(exc)
        return None
    except Exception as exc:  # noqa: BLE001 - see docstring
        log.warning("nvml: %s on GPU %d failed inside the bindings: %r; not asked again", path, caps.index, exc)
        caps.unsupported[path] = f"binding error {type(exc).__name__}"
        return None


def probe_gpu(backend: Backend, handle: Any, index: int, driver: str = "") -> GpuCapabilities:
    caps = GpuCapabilities(index=index, uuid=backend.uuid(handle), handle=handle)
    caps.name = _try(caps, "name", lambda: backend.name(handle)) or ""
    caps.pci_bus_id = _try(caps, "pci_info", lambda: backend.pci_bus_id(handle)) or ""
    arch = _try(caps, "architecture", lambda: backend.architecture(handle))
    caps.architecture = nf.ARCHITECTURES.get(arch, "unknown") if arch is not None else "unknown"
    cc = _try(caps, "compute_capability", lambda: backend.compute_capability(handle))
    caps.compute_capability = f"{cc[0]}.{cc[1]}" if cc else ""
    caps.vbios_version = _try(caps, "vbios_version", lambda: backend.vbios_version(handle)) or ""
    module = _try(caps, "module_id", lambda: backend.module_id(handle))
    caps.module_id = "" if module is None else str(module)
    for path, call in PLAIN_CALLS.items():
        if _try(caps, path, lambda call=call: call(backend, handle)) is not None or path in caps.transient:
            caps.plain.add(path)  # a transient failure is retried by every poll
            caps.transient.pop(path, None)
    caps.c2c = bool(_try(caps, "c2c_mode", lambda: backend.c2c_enabled(handle)))
    caps.platform = _try(caps, "platform_info", lambda: backend.platform_info(handle))
    caps.gpm = bool(_try(caps, "gpm", lambda: backend.gpm_supported(handle)))
    max_mem = _try(caps, "max_memory_clock", lambda: backend.max_clock_mhz(handle, CLOCK_MEM))
    width = _try(caps, "memory_bus_width", lambda: backend.memory_bus_width(handle))
    if max_mem and width:
        caps.hbm_peak_bytes_per_second = max_mem * 1e6 * width * 2 / 8
    _probe_fields(backend, handle, caps)
    _probe_links(backend, handle, caps)
    log.info("nvml capabilities\n%s", caps.table())
    return caps


def _probe_fields(backend: Backend, handle: Any, caps: GpuCapabilities) -> None:
    count = _try(caps, "nvlink_link_count", lambda: backend.field_values(handle, [(nf.NVLINK_LINK_COUNT, 0)]))
    if count and count[0].ret == SUCCESS and count[0].value is not None:
        caps.link_count = int(count[0].value)
    device = [(f.field_id, 0) for f in nf.DEVICE_FIELDS]
    answers = _try(caps, "field_values", lambda: backend.field_values(handle, device))
    for spec, answer in zip(nf.DEVICE_FIELDS, answers or [], strict=False):
        if answer.ret == SUCCESS:
            caps.field_requests.append((spec.field_id, 0))
            caps.field_targets.append((spec, None))
        elif answer.ret not in UNSUPPORTED_CODES:
            caps.transient[f"field {spec.field_id}"] = CODE_NAMES.get(answer.ret, f"code {answer.ret}")
    for link in range(caps.link_count):
        requests = [(f.field_id, link) for f in nf.LINK_FIELDS]
        answers = _try(caps, f"link {link} fields", lambda r=requests: backend.field_values(handle, r))
        for spec, answer in zip(nf.LINK_FIELDS, answers or [], strict=False):
            if answer.ret == SUCCESS:
                caps.field_requests.append((spec.field_id, link))
                caps.field_targets.append((spec, link))
            elif answer.ret in LOST_CODES:
                raise NvmlError(answer.ret, "nvmlDeviceGetFieldValues")
            elif answer.ret not in UNSUPPORTED_CODES:
                caps.transient[f"field {spec.field_id} on link {link}"] = CODE_NAMES.get(answer.ret, f"code {answer.ret}")
    if caps.field_requests:
        try:
            backend.field_values(handle, caps.field_requests)
        except NvmlError as exc:
            if exc.lost or exc.code == UNINITIALIZED:
                raise
            caps.batch_per_link = True
            caps.unsupported["batched field values"] = _why(exc)


def _probe_links(backend: Backend, handle: Any, caps: GpuCapabilities) -> None:
    requests = [(field_id, link) for link in range(caps.link_count) for field_id in (nf.LINK_VERSION, nf.LINK_SPEED)]
    answers = _try(caps, "nvlink_version_speed", lambda: backend.field_values(handle, requests)) or []
    for link in range(caps.link_count):
        answer = answers[2 * link] if 2 * link < len(answers) else None
        version = ""
        if answer is not None and answer.ret == SUCCESS and answer.value is not None:
            version = nf.NVLINK_VERSIONS.get(int(answer.value), f"nvml-{int(answer.value)}")
        speed = answers[2 * link + 1] if 2 * link + 1 < len(answers) else None
        if speed is not None and speed.ret == SUCCESS and speed.value is not None:
            caps.link_speeds[link] = float(speed.value) * 1e6
        remote = _try(caps, f"link {link} remote type", lambda link=link: backend.nvlink_remote_device_type(handle, link))
        bus = _try(caps, f"link {link} remote pci", lambda link=link: backend.nvlink_remote_pci_bus_id(handle, link))
        caps.links[link] = LinkIdentity(version, nf.NVLINK_REMOTE_TYPES.get(remote, "unknown") if remote is not None
                                        else "unknown", bus or "")
        for counter in nf.LEGACY_COUNTERS:
            path = f"link {link} legacy counter {counter}"
            ok = _try(caps, path, lambda link=link, counter=counter: backend.nvlink_error_counter(handle, link, counter))
            if ok is not None or caps.transient.pop(path, None) is not None:
                caps.legacy.append((link, counter))  # a transient failure is retried with the next legacy read
    # Per-link "not answering" entries would flood the table: fold them into one line per kind.
    folded: dict[str, set[str]] = {}
    for path in [p for p in caps.unsupported if p.startswith("link ")]:
        kind = path.split(" ", 2)[2]
        folded.setdefault(kind, set()).add(caps.unsupported.pop(path))
    for kind, why in folded.items():
        caps.unsupported[f"links: {kind}"] = "/".join(sorted(why))
