"""Facts from NVML, through the nvml source's :class:`Backend` (the real library, or a replay of
recorded answers) plus the four calls that backend does not make (:class:`ExtraCalls`).

One pass per run, not per poll: preflight reads more than the nvml source does (ECC and
persistence mode, every link's state and remote end, every error-counter path) and reads it
rarely. A call that fails leaves its fact unknown with NVML's reason; a GPU that is lost is
marked down and the others are still read.
"""

from __future__ import annotations

from typing import Any, Protocol

from exporter.preflight.facts import ErrorKey, GpuFacts, HostFacts, LinkFacts
from exporter.sources.nvml.backend import SUCCESS, Backend, NvmlError

# nvmlDeviceGetNvLinkErrorCounter counter ids and their names.
_LEGACY_COUNTERS = {0: "replay", 1: "recovery", 2: "crc_flit", 3: "crc_data", 4: "ecc_data"}
_REMOTE_TYPES = {0: "gpu", 1: "npu", 2: "switch", 0xFF: "unknown"}
_FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
# Unscoped fields (nvml.h ids): ECC mode now and after the next reset, row remap pending/failure, link count.
_ECC_CURRENT, _ECC_PENDING, _REMAP_PENDING, _REMAP_FAILURE, _LINK_COUNT = 1, 2, 144, 145, 91
# Per-link error fields: DL fields 161-163 (Hopper) and the NVLink5 COUNT_* errors (Blackwell).
_LINK_ERROR_FIELDS: dict[int, ErrorKey] = {
    161: ("dl", "replay"), 162: ("dl", "recovery"), 163: ("dl", "crc"),
    206: ("nvlink5", "malformed_packet"), 207: ("nvlink5", "buffer_overrun"), 208: ("nvlink5", "rcv"),
    209: ("nvlink5", "rcv_remote"), 210: ("nvlink5", "rcv_general"), 211: ("nvlink5", "local_link_integrity"),
    212: ("nvlink5", "xmit_discards"), 213: ("nvlink5", "recovery_successful"),
    214: ("nvlink5", "recovery_failed"), 219: ("nvlink5", "effective"), 221: ("nvlink5", "symbol"),
}
_MAX_LINKS = 18  # used when NVLINK_LINK_COUNT does not answer; B200, GB200 and H200 have 18


class ExtraCalls(Protocol):
    """NVML calls preflight needs beyond the nvml source's Backend. Raise NvmlError when unanswered."""

    def cuda_driver_version(self) -> int: ...
    def persistence_mode(self, handle: Any) -> bool: ...
    def nvlink_active(self, handle: Any, link: int) -> bool: ...
    def compute_pids(self, handle: Any) -> list[int]: ...


class PynvmlExtraCalls:
    """:class:`ExtraCalls` through ``nvidia-ml-py``; handles are pynvml's, as PynvmlBackend's are."""

    def __init__(self) -> None:
        import pynvml

        self._n = pynvml

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._n, name)(*args)
        except self._n.NVMLError as exc:
            raise NvmlError(exc.value, name) from None

    def cuda_driver_version(self) -> int:
        return int(self._call("nvmlSystemGetCudaDriverVersion"))

    def persistence_mode(self, handle: Any) -> bool:
        return bool(self._call("nvmlDeviceGetPersistenceMode", handle))

    def nvlink_active(self, handle: Any, link: int) -> bool:
        return bool(self._call("nvmlDeviceGetNvLinkState", handle, link))

    def compute_pids(self, handle: Any) -> list[int]:
        return [int(p.pid) for p in self._call("nvmlDeviceGetComputeRunningProcesses", handle)]


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, NvmlError) else f"{type(exc).__name__}: {exc}"


def host_facts(nvml: Backend, extra: ExtraCalls, origin: str = "NVML") -> HostFacts:
    """Read every GPU once. The backend must already be initialised."""
    unknown: dict[str, str] = {}
    try:
        count = nvml.device_count()
    except NvmlError as exc:
        return HostFacts(origin=origin, error=_reason(exc))
    driver = cuda = None
    try:
        driver = nvml.driver_version()
    except NvmlError as exc:
        unknown["driver_version"] = _reason(exc)
    try:
        raw = extra.cuda_driver_version()
        cuda = f"{raw // 1000}.{raw % 1000 // 10}"
    except NvmlError as exc:
        unknown["cuda_version"] = _reason(exc)
    gpus = tuple(_gpu(nvml, extra, index) for index in range(count))
    return HostFacts(origin=origin, driver_version=driver, cuda_version=cuda, gpus=gpus, unknown=unknown)


def _gpu(nvml: Backend, extra: ExtraCalls, index: int) -> GpuFacts:
    try:
        handle = nvml.handle_by_index(index)
        uuid = nvml.uuid(handle)
    except NvmlError as exc:
        return GpuFacts(index=index, up=False, down_reason=_reason(exc))
    unknown: dict[str, str] = {}

    def ask(key: str, call: Any, *args: Any) -> Any:
        try:
            return call(handle, *args)
        except NvmlError as exc:
            unknown[key] = _reason(exc)
            return None

    flags, why = _fields(nvml, handle, [_ECC_CURRENT, _ECC_PENDING, _REMAP_PENDING, _REMAP_FAILURE, _LINK_COUNT])
    for key, field_id in (("ecc", _ECC_CURRENT), ("remap", _REMAP_PENDING), ("link_count", _LINK_COUNT)):
        if field_id in why:
            unknown[key] = why[field_id]
    procs = ask("processes", extra.compute_pids)
    cc = ask("compute_capability", nvml.compute_capability)
    fabric = ask("fabric", nvml.fabric_info)
    link_count = flags.get(_LINK_COUNT)
    return GpuFacts(
        index=index,
        uuid=uuid,
        name=ask("name", nvml.name),
        bus_id=ask("bus_id", nvml.pci_bus_id),
        compute_capability=cc,
        ecc_current=_flag(flags.get(_ECC_CURRENT)),
        ecc_pending=_flag(flags.get(_ECC_PENDING)),
        persistence=ask("persistence", extra.persistence_mode),
        remap_pending=_flag(flags.get(_REMAP_PENDING)),
        remap_failure=_flag(flags.get(_REMAP_FAILURE)),
        link_count=None if link_count is None else int(link_count),
        links=_links(nvml, extra, handle, None if link_count is None else int(link_count), unknown),
        fabric_state=None if fabric is None else _fabric_state(fabric),
        processes=None if procs is None else tuple(procs),
        unknown=unknown,
    )


def _flag(value: float | None) -> bool | None:
    return None if value is None else bool(value)


def _fields(nvml: Backend, handle: Any, ids: list[int]) -> tuple[dict[int, float], dict[int, str]]:
    """Unscoped field values by id, and why each field that did not answer did not."""
    try:
        answers = nvml.field_values(handle, [(field_id, 0) for field_id in ids])
    except NvmlError as exc:
        return {}, dict.fromkeys(ids, _reason(exc))
    values: dict[int, float] = {}
    why: dict[int, str] = {}
    for field_id, answer in zip(ids, answers, strict=True):
        if answer.ret == SUCCESS and answer.value is not None:
            values[field_id] = float(answer.value)
        else:
            why[field_id] = str(NvmlError(answer.ret, f"field {field_id}"))
    return values, why


def _links(nvml: Backend, extra: ExtraCalls, handle: Any, link_count: int | None,
           unknown: dict[str, str]) -> tuple[LinkFacts, ...]:
    states: dict[int, bool | None] = {}
    for link in range(link_count if link_count is not None else _MAX_LINKS):
        try:
            states[link] = extra.nvlink_active(handle, link)
        except NvmlError as exc:  # links past the last one answer InvalidArgument or NotSupported
            unknown.setdefault("links", _reason(exc))
            if link_count is not None:
                states[link] = None
    active = [link for link, up in states.items() if up]
    errors: dict[int, dict[ErrorKey, float]] = {link: {} for link in states}
    remote: dict[int, tuple[str | None, str | None]] = {}
    for link in active:
        try:
            remote[link] = (_REMOTE_TYPES.get(nvml.nvlink_remote_device_type(handle, link), "unknown"),
                            nvml.nvlink_remote_pci_bus_id(handle, link))
        except NvmlError as exc:
            unknown.setdefault("link_remote", _reason(exc))
        for counter, counter_name in _LEGACY_COUNTERS.items():
            try:
                errors[link][("legacy", counter_name)] = float(nvml.nvlink_error_counter(handle, link, counter))
            except NvmlError:  # NotSupported on Blackwell: that path simply has no value there
                continue
    if active:
        # One field-values call for every error field of every active link (~1 ms per call).
        request = [(field_id, link) for link in active for field_id in _LINK_ERROR_FIELDS]
        try:
            for (field_id, link), answer in zip(request, nvml.field_values(handle, request), strict=True):
                if answer.ret == SUCCESS and answer.value is not None:
                    errors[link][_LINK_ERROR_FIELDS[field_id]] = float(answer.value)
        except NvmlError as exc:
            unknown["link_fields"] = _reason(exc)
    return tuple(
        LinkFacts(link=link, active=up, remote_type=remote.get(link, (None, None))[0],
                  remote_bus_id=remote.get(link, (None, None))[1], errors=errors[link])
        for link, up in sorted(states.items()))


def _fabric_state(info: dict[str, Any]) -> str | None:
    state = _FABRIC_STATES.get(int(info.get("state", 0)), f"state {info.get('state')}")
    if state == "completed" and int(info.get("status", 0)) != 0:
        return f"completed with error status {info['status']}"
    return None if state == "not_supported" else state
