"""The nvml source: GPU, NVLink, GPM and XID telemetry straight from NVML.

Probe initialises NVML, probes each GPU once (see :mod:`.capabilities`) and starts the XID
thread. Each poll reads every GPU in its own thread and waits at most ``gpu_deadline`` seconds
for all of them: a GPU whose NVML call hangs is reported stalled and left out of the cycle (and
is not asked again until that call returns), while the other GPUs report normally. A GPU that
answers GpuIsLost, ResetRequired or Unknown turns ``blackwell_gpu_up`` to 0 and loses its other
series; NVML is then shut down and re-initialised with backoff, and GPUs are found again by UUID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from exporter.backoff import backoff_delay
from exporter.snapshot import Family
from exporter.sources.base import PollError, ReprobeRequired, Source, SourceConfig
from exporter.sources.nvml.backend import UNINITIALIZED, Backend, NvmlError
from exporter.sources.nvml.capabilities import probe_gpu
from exporter.sources.nvml.compat import dcgm_compat_families
from exporter.sources.nvml.reader import GpuState, Sample, read_gpu
from exporter.sources.nvml.xid import XidWatcher

log = logging.getLogger(__name__)



class NvmlConfig(SourceConfig):
    enabled: bool = True
    interval: float = Field(10.0, gt=0, le=3600, description="seconds between polls")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds a poll may take before it is abandoned")
    gpu_deadline: float = Field(
        3.0, gt=0, description="seconds one poll waits for a GPU's NVML calls; a GPU past it is reported stalled")
    legacy_nvlink_interval: float = Field(
        60.0, ge=0, description="seconds between reads of the legacy per-link NVLink error counters "
        "(one NVML call per link and counter, ~1 ms each); 0 reads them every poll")
    gpm: bool = Field(True, description="read GPM metrics (tensor activity, DRAM bandwidth, NVLink/C2C rates)")
    xid_events: bool = Field(True, description="count XID events from NVML's event stream")
    dcgm_compat_names: bool = Field(
        False, description="also emit dcgm-exporter's default DCGM_FI_* names and labels")

    @model_validator(mode="after")
    def _deadline_within_timeout(self) -> NvmlConfig:
        if self.gpu_deadline >= self.timeout:
            raise ValueError(f"gpu_deadline ({self.gpu_deadline}s) must be below timeout ({self.timeout}s)")
        return self


@dataclass
class _Gpu:
    uuid: str
    index: int
    state: GpuState | None = None  # None while lost
    inflight: threading.Thread | None = None  # a read that outlived its deadline

    @property
    def lost(self) -> bool:
        return self.state is None

    @property
    def stalled(self) -> bool:
        return self.inflight is not None and self.inflight.is_alive()


@dataclass
class _Result:
    samples: list[Sample] | None = None
    error: BaseException | None = None


class NvmlSource(Source):
    name: ClassVar[str] = "nvml"
    stand_in: ClassVar[str | None] = "simulated"
    conflicts_with: ClassVar[Mapping[str, str]] = {"dcgm": "the same GPU metrics"}
    config_model: ClassVar[type[SourceConfig]] = NvmlConfig
    config: NvmlConfig

    def __init__(self, config: NvmlConfig, backend: Backend | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
        self._given_backend = backend
        self._backend: Backend | None = None
        self._clock = clock
        self._initialised = False
        self._driver = ""
        self._gpus: list[_Gpu] = []
        self._xid: XidWatcher | None = None
        self._xid_counts: Any = None
        self._reinit_failures = 0
        self._next_reinit: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def probe(self) -> None:
        backend = self._given_backend
        if backend is None:
            try:
                from exporter.sources.nvml.backend import PynvmlBackend

                backend = PynvmlBackend()
            except ImportError as exc:
                raise PollError(f"nvidia-ml-py is not installed: {exc}", "import") from None
        self._backend = backend
        try:
            backend.init()
        except NvmlError as exc:
            raise PollError(f"nvmlInit failed ({exc}); is the NVIDIA driver loaded?", "init") from None
        self._initialised = True
        try:
            self._driver = backend.driver_version()
            count = backend.device_count()
        except NvmlError as exc:
            raise PollError(f"NVML answered init but not the device list: {exc}", "init") from None
        self._gpus = []
        self._next_reinit, self._reinit_failures = None, 0
        for index in range(count):
            try:
                handle = backend.handle_by_index(index)
                caps = probe_gpu(backend, handle, index, self._driver)
            except NvmlError as exc:
                # Without a UUID there is nothing to find it by later: the next full probe tries again.
                log.error("nvml: GPU %d did not answer its probe (%s); it is left out", index, exc)
                continue
            self._gpus.append(_Gpu(caps.uuid, index, GpuState(caps)))
        if not self._gpus:
            raise PollError(f"NVML lists {count} GPUs and none answered its probe", "probe")
        self._start_xid()

    def close(self) -> None:
        self._stop_xid()
        backend = self._backend
        for gpu in self._gpus:
            self._drop_state(gpu)
        if backend is not None and self._initialised:
            try:
                backend.shutdown()
            except NvmlError as exc:
                log.debug("nvml: shutdown: %s", exc)
        self._initialised = False
        self._gpus = []

    # -- one poll ------------------------------------------------------------------------------
    def poll(self) -> list[Family]:
        started = self._clock()
        if self._next_reinit is not None and started >= self._next_reinit:
            self._reinit()
        results = self._read_all(started)
        samples: list[Sample] = []
        up = Family("blackwell_gpu_up")
        stalled = Family("blackwell_gpu_nvml_stalled")
        answered = 0
        for gpu in self._gpus:
            result = results.get(gpu.uuid)
            if result is not None and result.error is not None:
                self._handle_error(gpu, result.error)
            if gpu.lost:
                up.add((str(gpu.index), gpu.uuid), 0)
                continue
            g = str(gpu.index)
            stalled.add((g, gpu.uuid), int(gpu.stalled))
            if result is None or result.samples is None:
                up.add((g, gpu.uuid), 0 if gpu.stalled else 1)
                continue
            up.add((g, gpu.uuid), 1)
            answered += 1
            samples.extend(result.samples)
        self._add_xids(samples)
        if answered == 0 and any(not gpu.lost for gpu in self._gpus):
            stuck = sum(gpu.stalled for gpu in self._gpus)
            if stuck:
                raise PollError(f"NVML calls on {stuck} GPU(s) did not return within {self.config.gpu_deadline:g}s",
                                "stalled")
            raise PollError("no GPU answered this poll", "error")
        families = _families(samples)
        if self.config.dcgm_compat_names:
            last = self._xid.last() if self._xid is not None else {}
            families.extend(dcgm_compat_families(samples, {g.uuid: g for g in self._gpus}, last))
        return [up, stalled, *families]

    def _read_all(self, now: float) -> dict[str, _Result]:
        backend = self._backend
        assert backend is not None
        results: dict[str, _Result] = {}
        threads = []
        for gpu in self._gpus:
            if gpu.lost or gpu.stalled:
                continue
            gpu.inflight = None
            result = _Result()
            state = gpu.state
            assert state is not None

            def work(state: GpuState = state, result: _Result = result) -> None:
                try:
                    result.samples = read_gpu(backend, state, self._driver, now, self.config.legacy_nvlink_interval,
                                              self.config.gpm)
                except BaseException as exc:  # noqa: BLE001 - handed to the poll thread
                    result.error = exc

            thread = threading.Thread(target=work, name=f"nvml-gpu{gpu.index}", daemon=True)
            thread.start()
            threads.append((gpu, thread))
            results[gpu.uuid] = result
        deadline = self._clock() + self.config.gpu_deadline
        for gpu, thread in threads:
            thread.join(max(0.0, deadline - self._clock()))
            if thread.is_alive():
                gpu.inflight = thread
                log.warning("nvml: GPU %d (%s): NVML did not answer within %.1fs; reported stalled",
                            gpu.index, gpu.uuid, self.config.gpu_deadline)
                del results[gpu.uuid]
        return results

    def _handle_error(self, gpu: _Gpu, error: BaseException) -> None:
        if isinstance(error, NvmlError) and error.lost:
            log.error("nvml: GPU %d (%s) is lost (%s): its series are dropped until it answers again",
                      gpu.index, gpu.uuid, error)
            self._drop_state(gpu)
            if self._next_reinit is None:
                self._next_reinit = self._clock() + self.config.interval
            return
        if isinstance(error, NvmlError) and error.code == UNINITIALIZED:
            raise ReprobeRequired(f"NVML is no longer initialised ({error})")
        log.error("nvml: GPU %d (%s) read failed: %s", gpu.index, gpu.uuid, error,
                  exc_info=not isinstance(error, NvmlError))

    def _add_xids(self, samples: list[Sample]) -> None:
        if self._xid is None:
            return
        index = {gpu.uuid: gpu.index for gpu in self._gpus if not gpu.lost}
        for (uuid, xid), count in sorted(self._xid.counts().items()):
            if uuid in index:
                samples.append(("blackwell_gpu_xid_errors_total", (str(index[uuid]), str(xid)), count))

    # -- lost GPUs and re-init -----------------------------------------------------------------
    def _reinit(self) -> None:
        backend = self._backend
        assert backend is not None
        lost = [gpu.uuid for gpu in self._gpus if gpu.lost]
        log.info("nvml: re-initialising NVML to look for lost GPU(s) %s", ", ".join(lost))
        self._stop_xid()
        for gpu in self._gpus:
            self._drop_state(gpu)
        try:
            if self._initialised:
                backend.shutdown()
        except NvmlError as exc:
            log.debug("nvml: shutdown before re-init: %s", exc)
        self._initialised = False
        try:
            backend.init()
            self._initialised = True
        except NvmlError as exc:
            log.error("nvml: re-init failed: %s", exc)
            self._schedule_reinit()
            return
        for gpu in self._gpus:
            try:
                handle = backend.handle_by_uuid(gpu.uuid)
                index = backend.index(handle)
                gpu.state = GpuState(probe_gpu(backend, handle, index, self._driver))
                gpu.index = index
                if gpu.uuid in lost:
                    log.warning("nvml: GPU %s is back as GPU %d", gpu.uuid, index)
            except NvmlError as exc:
                log.warning("nvml: GPU %s still does not answer: %s", gpu.uuid, exc)
        if any(gpu.lost for gpu in self._gpus):
            self._schedule_reinit()
        else:
            self._reinit_failures = 0
            self._next_reinit = None
        self._start_xid()

    def _schedule_reinit(self) -> None:
        self._reinit_failures += 1
        delay = backoff_delay(self.config.interval, self._reinit_failures + 1)
        self._next_reinit = self._clock() + delay

    def _drop_state(self, gpu: _Gpu) -> None:
        state, gpu.state = gpu.state, None
        if gpu.inflight is not None and gpu.inflight.is_alive():
            return  # a stalled read may still be using the GPM sample: freeing it under it could crash NVML
        if state is not None and state.gpm_sample is not None and self._backend is not None:
            try:
                self._backend.gpm_free(state.gpm_sample)
            except NvmlError:
                pass  # the sample belonged to a session that is gone

    def _start_xid(self) -> None:
        if not self.config.xid_events or self._backend is None:
            return
        handles = [gpu.state.caps.handle for gpu in self._gpus if gpu.state is not None]
        watcher = XidWatcher(self._backend, handles, self._xid_counts)
        try:
            watcher.start()
        except NvmlError as exc:
            log.warning("nvml: XID events unavailable (%s); blackwell_gpu_xid_errors_total stays empty", exc)
            return
        self._xid = watcher
        self._xid_counts = watcher.carried_counts()

    def _stop_xid(self) -> None:
        if self._xid is not None:
            self._xid.stop()
            self._xid = None


def _families(samples: list[Sample]) -> list[Family]:
    by_name: dict[str, Family] = {}
    for metric, labels, value in samples:
        family = by_name.get(metric)
        if family is None:
            family = by_name[metric] = Family(metric)
        family.add(labels, value)
    return list(by_name.values())
