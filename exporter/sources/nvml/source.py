"""The nvml source: GPU, NVLink, GPM and XID telemetry straight from NVML.

Probe initialises NVML, probes each GPU once (see :mod:`.capabilities`) and starts the XID
thread. Each poll reads every GPU in its own thread and waits at most ``gpu_deadline`` seconds
for all of them: a GPU whose NVML call hangs is reported stalled and left out of the cycle (and
is not asked again until that call returns), while the other GPUs report normally.

Every GPU the host should have is reported, up or down: each index NVML counts (one whose handle
or probe fails is down, under the UUID it had before if this process saw it), every UUID seen
earlier in this process, and up to ``expected_gpus``. A GPU that answers GpuIsLost, ResetRequired
or Unknown turns ``blackwell_gpu_up`` to 0 and loses its other series; NVML is then shut down and
re-initialised with backoff, and GPUs are enumerated again and matched by UUID. Any other failed
call costs only its own series and counts in ``blackwell_gpu_nvml_read_errors_total``.

NVML is never shut down under a thread that is still inside it (a stalled GPU read or the XID
wait: concurrent teardown has crashed the process on real hardware): re-init waits until they
have left, and ``close`` hands the shutdown to a thread that calls it once they have.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from exporter.backoff import backoff_delay
from exporter.snapshot import Family
from exporter.sources.base import PartialPollError, PollError, ReprobeRequired, Source, SourceConfig
from exporter.sources.dcgm_exporter_names import CompatGeneration, exporter_hostname
from exporter.sources.nvml.backend import UNINITIALIZED, Backend, NvmlError
from exporter.sources.nvml.capabilities import probe_gpu
from exporter.sources.nvml.compat import dcgm_compat_families
from exporter.sources.nvml.known import load_known, save_known
from exporter.sources.nvml.reader import GpuState, Reading, Sample, read_gpu
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
    dcgm_compat_names: CompatGeneration = Field(
        False, description="also emit dcgm-exporter's default DCGM_FI_* names and labels of one generation: "
        "\"pre-4.6\" (Hostname label), \"pre-4.9\" (true means this), \"4.9\" (DCGM 4.7 names, base units)")
    expected_gpus: int | None = Field(
        None, ge=1, le=4096, description="GPUs this host should have; those NVML does not list are reported "
        "down (blackwell_gpu_up 0 with an empty uuid) and /readyz says so")
    known_gpus_file: str | None = Field(
        None, description="JSON file that remembers the UUIDs of the GPUs seen, so one that is down stays "
        "reported down under its UUID after a restart; remove a GPU's entry after taking it out on purpose")

    @model_validator(mode="after")
    def _deadline_within_timeout(self) -> NvmlConfig:
        if self.gpu_deadline >= self.timeout:
            raise ValueError(f"gpu_deadline ({self.gpu_deadline}s) must be below timeout ({self.timeout}s)")
        return self


@dataclass
class _Gpu:
    uuid: str  # "" for a GPU that never answered in this process
    index: int
    state: GpuState | None = None  # None while down
    inflight: threading.Thread | None = None  # a read that outlived its deadline
    why_down: str = ""
    reprobe_failures: int = 0
    reprobe_at: float = 0.0

    @property
    def lost(self) -> bool:
        return self.state is None

    @property
    def stalled(self) -> bool:
        return self.inflight is not None and self.inflight.is_alive()


@dataclass
class _Result:
    reading: Reading | None = None
    state: GpuState | None = None  # a fresh probe of a GPU whose earlier probe met transient errors
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
        self._hostname = exporter_hostname()
        self._gpus: list[_Gpu] = []
        self._xid: XidWatcher | None = None
        self._xid_counts: Any = None
        self._reinit_failures = 0
        self._next_reinit: float | None = None
        self._read_errors: Counter[tuple[str, str]] = Counter()  # (uuid, call) -> failed calls
        self._partial: dict[str, int] = {}  # uuid -> 1 when its last poll lost a series to a failed call
        self._in_nvml: list[threading.Thread] = []  # threads left inside NVML (stalled reads, XID waits)
        self._down: list[str] = []

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
        self._next_reinit, self._reinit_failures = None, 0
        self._gpus = self._enumerate(backend, count)
        if not self._gpus:
            raise PollError("NVML lists no GPU (set sources.nvml.expected_gpus to report missing ones)", "probe")
        if any(gpu.lost for gpu in self._gpus):
            self._next_reinit = self._clock() + self.config.interval
        self._start_xid()

    def close(self) -> None:
        """Stop the XID thread and shut NVML down, at once or as soon as no thread is inside it."""
        self._stop_xid()
        for gpu in self._gpus:
            self._drop_state(gpu)
        if self._backend is not None and self._initialised:
            self._release_nvml(self._backend)
        self._initialised = False

    def not_ready(self) -> list[str]:
        """Every GPU the host should have and that is down: /readyz lists them."""
        return list(self._down)

    # -- finding the GPUs --------------------------------------------------------------------------
    def _enumerate(self, backend: Backend, count: int) -> list[_Gpu]:
        """Every GPU NVML counts, probed, plus the ones this process saw before or was told to expect."""
        before = {gpu.uuid: gpu for gpu in self._gpus if gpu.uuid}
        remembered = load_known(self.config.known_gpus_file) if self.config.known_gpus_file else {}
        for uuid, index in remembered.items():
            before.setdefault(uuid, _Gpu(uuid, index))
        gpus: list[_Gpu] = []
        for index in range(count):
            try:
                handle = backend.handle_by_index(index)
                caps = probe_gpu(backend, handle, index, self._driver)
            except NvmlError as exc:
                log.error("nvml: GPU %d did not answer its probe (%s); reported down", index, exc)
                gpus.append(_Gpu("", index, why_down=f"GPU {index} does not answer NVML ({exc})"))
                continue
            if before.get(caps.uuid) is not None and before[caps.uuid].why_down:
                log.warning("nvml: GPU %s is back as GPU %d", caps.uuid, index)
            gpus.append(_Gpu(caps.uuid, index, GpuState(caps)))
        found = {gpu.uuid for gpu in gpus}
        for uuid, old in before.items():
            if uuid in found:
                continue
            nameless = next((gpu for gpu in gpus if not gpu.uuid and gpu.index == old.index), None)
            if nameless is not None:
                nameless.uuid = uuid  # the index that fails now is where this UUID answered before
            else:
                gpus.append(_Gpu(uuid, old.index, why_down=f"GPU {uuid} is no longer listed by NVML"))
        if self.config.known_gpus_file and {gpu.uuid: gpu.index for gpu in gpus if gpu.uuid} != remembered:
            save_known(self.config.known_gpus_file, {gpu.uuid: gpu.index for gpu in gpus if gpu.uuid})
        taken = {gpu.index for gpu in gpus}
        free = (index for index in range(4096) if index not in taken)
        while self.config.expected_gpus is not None and len(gpus) < self.config.expected_gpus:
            index = next(free)
            gpus.append(_Gpu("", index, why_down=f"GPU {index} is missing: NVML lists {count}, "
                                                 f"{self.config.expected_gpus} expected"))
        return sorted(gpus, key=lambda gpu: gpu.index)

    # -- one poll ------------------------------------------------------------------------------
    def poll(self) -> list[Family]:
        started = self._clock()
        if self._next_reinit is not None and started >= self._next_reinit:
            self._reinit()
        results = self._read_all(started)
        samples: list[Sample] = []
        up, stalled = Family("blackwell_gpu_up"), Family("blackwell_gpu_nvml_stalled")
        partial = Family("blackwell_gpu_nvml_partial_read")
        answered = 0
        for gpu in self._gpus:
            result = results.get(id(gpu))
            if result is not None:
                self._take_result(gpu, result)
            labels = (str(gpu.index), gpu.uuid)
            if gpu.lost:
                up.add(labels, 0)
                continue
            stalled.add(labels, int(gpu.stalled))
            if result is None or result.reading is None:
                up.add(labels, 0 if gpu.stalled else 1)
                continue
            up.add(labels, 1)
            partial.add(labels, int(bool(result.reading.failures)))
            answered += 1
            samples.extend(result.reading.samples)
        self._down = [gpu.why_down or f"GPU {gpu.index} ({gpu.uuid}) is down" for gpu in self._gpus if gpu.lost]
        self._add_xids(samples)
        if answered == 0 and any(not gpu.lost for gpu in self._gpus):
            # Still publish which GPUs are down or stalled: BlackwellGPULost must see them.
            stuck = sum(gpu.stalled for gpu in self._gpus)
            if stuck:
                raise PartialPollError(f"NVML calls on {stuck} GPU(s) did not return within "
                                       f"{self.config.gpu_deadline:g}s", [up, stalled], "stalled")
            raise PartialPollError("no GPU answered this poll", [up, stalled], "error")
        families = [*_families(samples), self._read_error_family()]
        if self.config.dcgm_compat_names:
            last = self._xid.last() if self._xid is not None else {}
            families.extend(dcgm_compat_families(samples, {g.uuid: g for g in self._gpus if g.uuid}, last,
                                                 str(self.config.dcgm_compat_names), self._hostname, self._driver))
        return [up, stalled, partial, *families]

    def _read_all(self, now: float) -> dict[int, _Result]:
        backend = self._backend
        assert backend is not None
        results: dict[int, _Result] = {}
        threads = []
        for gpu in self._gpus:
            if gpu.lost or gpu.stalled:
                continue
            gpu.inflight = None
            result = _Result()
            reprobe = bool(gpu.state is not None and gpu.state.caps.transient and now >= gpu.reprobe_at)

            def work(state: GpuState | None = gpu.state, result: _Result = result, reprobe: bool = reprobe) -> None:
                assert state is not None
                try:
                    if reprobe:
                        state = result.state = _reprobe(backend, state, self._driver)
                    result.reading = read_gpu(backend, state, self._driver, now, self.config.legacy_nvlink_interval,
                                              self.config.gpm)
                except BaseException as exc:  # noqa: BLE001 - handed to the poll thread
                    result.error = exc

            thread = threading.Thread(target=work, name=f"nvml-gpu{gpu.index}", daemon=True)
            thread.start()
            threads.append((gpu, thread))
            results[id(gpu)] = result
        deadline = self._clock() + self.config.gpu_deadline
        for gpu, thread in threads:
            thread.join(max(0.0, deadline - self._clock()))
            if thread.is_alive():
                gpu.inflight = thread
                log.warning("nvml: GPU %d (%s): NVML did not answer within %.1fs; reported stalled",
                            gpu.index, gpu.uuid, self.config.gpu_deadline)
                del results[id(gpu)]
        return results

    def _take_result(self, gpu: _Gpu, result: _Result) -> None:
        """Install a fresh probe, count failed calls, and act on an error that ended the read."""
        if result.state is not None:
            gpu.state = result.state
            gpu.reprobe_failures = gpu.reprobe_failures + 1 if result.state.caps.transient else 0
            gpu.reprobe_at = self._clock() + backoff_delay(self.config.interval, gpu.reprobe_failures + 1)
        if result.reading is not None:
            for call, error in result.reading.failures:
                self._read_errors[(gpu.uuid, call)] += 1
                log.warning("nvml: GPU %d (%s): %s failed (%s); its series are left out this poll",
                            gpu.index, gpu.uuid, call, error)
        if result.error is not None:
            self._handle_error(gpu, result.error)

    def _handle_error(self, gpu: _Gpu, error: BaseException) -> None:
        if isinstance(error, NvmlError) and error.lost:
            log.error("nvml: GPU %d (%s) is lost (%s): its series are dropped until it answers again",
                      gpu.index, gpu.uuid, error)
            self._drop_state(gpu)
            gpu.why_down = f"GPU {gpu.index} ({gpu.uuid}) is lost: {error}"
            if self._next_reinit is None:
                self._next_reinit = self._clock() + self.config.interval
            return
        if isinstance(error, NvmlError) and error.code == UNINITIALIZED:
            raise ReprobeRequired(f"NVML is no longer initialised ({error})")
        # Only a fresh probe gets here (a read keeps going past a failed call): the GPU keeps its old state.
        self._read_errors[(gpu.uuid, "probe")] += 1
        gpu.reprobe_failures += 1
        gpu.reprobe_at = self._clock() + backoff_delay(self.config.interval, gpu.reprobe_failures + 1)
        log.error("nvml: GPU %d (%s) probe failed: %s", gpu.index, gpu.uuid, error,
                  exc_info=not isinstance(error, NvmlError))

    def _read_error_family(self) -> Family:
        family = Family("blackwell_gpu_nvml_read_errors_total")
        index = {gpu.uuid: str(gpu.index) for gpu in self._gpus}
        for (uuid, call), count in sorted(self._read_errors.items()):
            if uuid in index:
                family.add((index[uuid], uuid, call), count)
        return family

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
        busy = self._threads_in_nvml()
        if busy:
            log.warning("nvml: re-init waits: %d thread(s) still inside NVML (%s)", len(busy),
                        ", ".join(thread.name for thread in busy))
            self._schedule_reinit()
            return
        log.info("nvml: re-initialising NVML to look for GPU(s) that are down: %s",
                 ", ".join(gpu.uuid or f"index {gpu.index}" for gpu in self._gpus if gpu.lost))
        self._stop_xid()
        if self._threads_in_nvml():
            self._schedule_reinit()  # the XID wait did not return: try again later
            return
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
            count = backend.device_count()
        except NvmlError as exc:
            log.error("nvml: re-init failed: %s", exc)
            self._schedule_reinit()
            return
        self._gpus = self._enumerate(backend, count)
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

    def _threads_in_nvml(self) -> list[threading.Thread]:
        """Threads that may still be inside an NVML call: stalled reads and XID waits left behind."""
        self._in_nvml = [thread for thread in self._in_nvml if thread.is_alive()]
        stalled = [gpu.inflight for gpu in self._gpus if gpu.inflight is not None and gpu.inflight.is_alive()]
        return [*self._in_nvml, *stalled]

    def _release_nvml(self, backend: Backend) -> None:
        """nvmlShutdown now, or from a helper thread once every thread inside NVML has returned.

        NVML counts inits: a shutdown that comes after a later init only lowers the count."""
        busy = self._threads_in_nvml()

        def shutdown() -> None:
            for thread in busy:
                thread.join()
            try:
                backend.shutdown()
            except NvmlError as exc:
                log.debug("nvml: shutdown: %s", exc)

        if not busy:
            shutdown()
            return
        log.warning("nvml: %d thread(s) still inside NVML; nvmlShutdown waits for them in the background", len(busy))
        threading.Thread(target=shutdown, name="nvml-shutdown", daemon=True).start()

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
            left = self._xid.stop()
            if left is not None:
                self._in_nvml.append(left)
            self._xid = None


def _reprobe(backend: Backend, state: GpuState, driver: str) -> GpuState:
    """Probe a GPU again (its last probe met transient errors), keeping what must survive polls."""
    caps = state.caps
    log.info("nvml: probing GPU %d again (failed for now: %s)", caps.index,
             ", ".join(f"{k} ({v})" for k, v in sorted(caps.transient.items())))
    fresh = GpuState(probe_gpu(backend, caps.handle, caps.index, driver))
    fresh.gpm_sample, fresh.gpm_taken_at = state.gpm_sample, state.gpm_taken_at
    fresh.legacy_values, fresh.legacy_read_at = state.legacy_values, state.legacy_read_at
    fresh.link_states = state.link_states
    return fresh


def _families(samples: list[Sample]) -> list[Family]:
    by_name: dict[str, Family] = {}
    for metric, labels, value in samples:
        family = by_name.get(metric)
        if family is None:
            family = by_name[metric] = Family(metric)
        family.add(labels, value)
    return list(by_name.values())

